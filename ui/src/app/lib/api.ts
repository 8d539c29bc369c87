import { Injectable } from '@angular/core';
import type { Json } from './schema-form';

export interface Kind {
  kind: string;
  role: string;
  description: string;
  icon: string;
  schema: Json;
}

export interface FieldError {
  path: (string | number)[];
  field: string;
  message: string;
}

export class ApiError extends Error {
  constructor(public status: number, message: string, public errors: FieldError[] = []) {
    super(message);
  }
}

const TOKEN_KEY = 'hometwin.token';

/** The HTTP API of `hometwin serve`: the login token from the address once, then a header. */
@Injectable({ providedIn: 'root' })
export class Api {
  readonly token: string | null;

  constructor() {
    let token: string | null = null;
    try {
      const url = new URL(window.location.href);
      token = url.searchParams.get('token');
      if (token) {
        sessionStorage.setItem(TOKEN_KEY, token);
        url.searchParams.delete('token');
        window.history.replaceState(window.history.state, '', url.pathname + url.search + url.hash);
      } else {
        token = sessionStorage.getItem(TOKEN_KEY);
      }
    } catch {
      token = null;
    }
    this.token = token;
  }

  async call<T = Json>(method: string, path: string, body?: unknown): Promise<T> {
    const headers: Record<string, string> = {};
    if (this.token) headers['Authorization'] = `Bearer ${this.token}`;
    if (body !== undefined) headers['Content-Type'] = 'application/json';
    const res = await fetch(`/api${path}`, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
    const text = await res.text();
    let data: Json = null;
    try {
      data = text ? JSON.parse(text) : null;
    } catch {
      data = { detail: text.slice(0, 200) };
    }
    if (!res.ok) {
      throw new ApiError(res.status, data?.detail ?? `${res.status} ${res.statusText}`, data?.errors ?? []);
    }
    return data as T;
  }

  get<T = Json>(path: string): Promise<T> {
    return this.call<T>('GET', path);
  }

  post<T = Json>(path: string, body: unknown): Promise<T> {
    return this.call<T>('POST', path, body);
  }

  /** An EventSource on a live twin's stream (EventSource cannot send headers: the token goes in the query). */
  stream(runId: string): EventSource {
    const q = this.token ? `?token=${encodeURIComponent(this.token)}` : '';
    return new EventSource(`/api/runs/${encodeURIComponent(runId)}/stream${q}`);
  }
}

/** `elements.2.config.capacity_kwh` for the path of a field error (a leading `spec` dropped). */
export function errorKey(path: (string | number)[]): string {
  const p = path[0] === 'spec' ? path.slice(1) : path;
  return p.join('.');
}
