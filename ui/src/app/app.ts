import { Component, inject } from '@angular/core';
import { RouterLink, RouterLinkActive, RouterOutlet } from '@angular/router';
import { Api } from './lib/api';

@Component({
  selector: 'app-root',
  imports: [RouterOutlet, RouterLink, RouterLinkActive],
  template: `
    <header class="top">
      <h1>hometwin</h1>
      <nav aria-label="Main">
        <a routerLink="/builder" routerLinkActive="active" ariaCurrentWhenActive="page">Builder</a>
        <a routerLink="/runs" routerLinkActive="active" ariaCurrentWhenActive="page">Run &amp; compare</a>
        <a routerLink="/live" routerLinkActive="active" ariaCurrentWhenActive="page">Live</a>
      </nav>
      @if (!api.token) { <span class="hint">no login token: open the address <code>hometwin serve</code> printed</span> }
    </header>
    <main><router-outlet /></main>
  `,
})
export class App {
  readonly api = inject(Api);
}
