/** A symbol per icon name of GET /api/kinds (Material Symbols names), drawn with the system's fonts. */
const SYMBOLS: Record<string, string> = {
  sunny: '☀', partly_cloudy_day: '☁', solar_power: '▦', battery_charging_full: '▮', electrical_services: '⇄',
  electric_meter: '⚡', schedule: '⏲', oven: '♨', tv: '▭', kettle: '☕', lightbulb: '☼', kitchen: '❄',
  home: '⌂', heat: '≋', heat_pump: '♻', water_heater: '♒', casino: '⚄', local_laundry_service: '◎',
  dry: '◌', dishwasher: '◫', skillet: '♨',
};

export function symbol(icon: string | undefined, kind = ''): string {
  return (icon && SYMBOLS[icon]) || (kind.charAt(0).toUpperCase() || '•');
}
