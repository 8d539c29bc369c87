"""The sun: solar position and clear-sky irradiance."""
