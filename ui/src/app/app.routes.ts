import { Routes } from '@angular/router';

export const routes: Routes = [
  { path: '', pathMatch: 'full', redirectTo: 'builder' },
  { path: 'builder', title: 'Builder — hometwin', loadComponent: () => import('./builder.component').then((m) => m.Builder) },
  { path: 'runs', title: 'Runs — hometwin', loadComponent: () => import('./runs.component').then((m) => m.Runs) },
  { path: 'live', title: 'Live — hometwin', loadComponent: () => import('./live.component').then((m) => m.Live) },
  { path: '**', redirectTo: 'builder' },
];
