/**
 * Messages between RemoteBundlerRuntime (the editor's page) and the runtime host page
 * (`host.html` on the runtime origin, `bundler.<PREVIEW_DOMAIN>`), over one MessagePort. The host
 * runs the BundlerRuntime on its own origin, so the bundled app never shares the editor's origin
 * (its storage, its cookies, its tokens).
 */
import type { ProjectFiles } from '@preview/tiers';
import type { BuildProblem } from './build.ts';

/** What the editor's page posts to the host window (once) to hand it the port. */
export const HOST_CONNECT = 'preview-bundler-host:connect';
/** What the host posts to its parent once its script runs and listens. */
export const HOST_LOADED = 'preview-bundler-host:loaded';
/** The host page's path on the runtime origin. */
export const HOST_PAGE = 'host.html';

/** Options the host's BundlerRuntime takes from the editor (no functions: they cannot be posted). */
export interface HostRuntimeOptions {
  previewId: string;
  vendor?: Record<string, string>;
  /** The host asks the editor for the import map (`importMap` op) instead of calling the router itself. */
  importMap: boolean;
  bootTimeoutMs?: number;
}

/** Calls the editor makes; each is answered once with the same `id`. */
export type HostCall =
  | { id: number; op: 'start'; options: HostRuntimeOptions }
  | { id: number; op: 'mount'; files: ProjectFiles }
  | { id: number; op: 'install' }
  | { id: number; op: 'run' }
  | { id: number; op: 'writeFile'; path: string; content: string | Uint8Array }
  | { id: number; op: 'teardown' };

/** An error as it crosses the port: enough to rebuild a PreviewError (or RuntimeUnavailableError). */
export interface HostError {
  name: string;
  code: string;
  message: string;
  runtime?: string;
  /** A BuildFailedError's problems (file, line, column, message of each). */
  problems?: BuildProblem[];
}

/** What the host posts: answers to calls, the runtime's events, and its own import-map requests. */
export type HostMessage =
  | { id: number; ok: true; value?: unknown }
  | { id: number; ok: false; error: HostError }
  | { event: string; payload: unknown }
  | { ask: number; op: 'importMap' };

/** The editor's answer to an `ask`. */
export type HostAnswer =
  | { ask: number; ok: true; value: { imports: Record<string, string> } }
  | { ask: number; ok: false; error: HostError };

/** The events the host forwards (every RuntimeEvents key). */
export const HOST_EVENTS = ['server-ready', 'error', 'updated'] as const;

/** An error (or anything thrown) in its posted form. */
export function toHostError(e: unknown): HostError {
  const err = e as { name?: string; code?: string; message?: string; runtime?: string; problems?: unknown };
  return {
    name: typeof err?.name === 'string' ? err.name : 'Error',
    code: typeof err?.code === 'string' ? err.code : 'runtime_failed',
    message: typeof err?.message === 'string' ? err.message : String(e),
    ...(typeof err?.runtime === 'string' ? { runtime: err.runtime } : {}),
    ...(Array.isArray(err?.problems) ? { problems: err.problems as BuildProblem[] } : {}),
  };
}
