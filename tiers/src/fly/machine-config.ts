import { TierUnavailableError } from '../errors.ts';
import type { PreviewSpec } from '../types.ts';
import type { FlyMachineConfig } from './machines-client.ts';

/** Where the project lives inside a preview's machine. */
export const PROJECT_DIR = '/project';

/** What {@link flyMachineConfig} needs besides the spec. */
export interface MachineConfigOptions {
  /** The preview-base image Fly pulls. */
  image: string;
  /** The daemon's port inside the machine. */
  daemonPort: number;
  /** The preview's daemon token (`PREVIEW_DAEMON_TOKEN`). */
  daemonToken: string;
  /** Largest project (decoded bytes) written into the machine at boot. */
  maxInlineFilesBytes: number;
  /** Overrides of the default guest (shared CPU, 1 vCPU, 1024 MB). */
  guest?: { cpu_kind?: 'shared' | 'performance'; cpus?: number; memory_mb?: number } | undefined;
}

/**
 * The project goes into the machine at boot as Fly `files` (base64, under /project), not over the
 * sync socket: the daemon treats every seq it has seen as a replay, so an initial load sent as
 * batches would use up sequence numbers that belong to the editor's edits.
 * @throws TierUnavailableError `fly_project_too_large` when the decoded files pass `maxBytes`, so
 * placement moves on to another tier.
 */
export function projectFiles(
  files: PreviewSpec['files'],
  maxBytes: number,
): NonNullable<FlyMachineConfig['files']> {
  const out: NonNullable<FlyMachineConfig['files']> = [];
  let bytes = 0;
  for (const [path, v] of Object.entries(files)) {
    const buf =
      typeof v === 'string' || v.encoding === 'utf8'
        ? Buffer.from(typeof v === 'string' ? v : v.content, 'utf8')
        : Buffer.from(v.content, 'base64');
    bytes += buf.length;
    out.push({ guest_path: `${PROJECT_DIR}/${path}`, raw_value: buf.toString('base64') });
  }
  if (bytes > maxBytes)
    throw new TierUnavailableError(
      'fly_project_too_large',
      `project is ${bytes} bytes; the fly tier writes at most ${maxBytes} bytes into a new machine`,
      { tier: 'fly' },
    );
  return out;
}

/**
 * The Machines API config of a preview's machine: the image, the project as boot files, the daemon's
 * env, metadata the tier finds it by (`preview_id`, `managed_by: preview-router`), one service on the
 * daemon's port behind Fly's edge with a health check, restart on failure, destroyed once stopped.
 * @throws TierUnavailableError `fly_project_too_large` (see {@link projectFiles}).
 */
export function flyMachineConfig(spec: PreviewSpec, o: MachineConfigOptions): FlyMachineConfig {
  const files = projectFiles(spec.files, o.maxInlineFilesBytes);
  return {
    image: o.image,
    ...(files.length ? { files } : {}),
    env: {
      ...spec.env,
      PREVIEW_TEMPLATE: spec.template,
      PREVIEW_DAEMON_TOKEN: o.daemonToken,
      PREVIEW_DAEMON_PORT: String(o.daemonPort),
      PREVIEW_PROJECT_DIR: PROJECT_DIR,
    },
    metadata: {
      preview_id: spec.previewId,
      user_id: spec.userId,
      template: spec.template,
      managed_by: 'preview-router',
    },
    guest: { cpu_kind: 'shared', cpus: 1, memory_mb: 1024, ...o.guest },
    services: [
      {
        protocol: 'tcp',
        internal_port: o.daemonPort,
        // The edge wakes a suspended preview on its next request; the router's idle job suspends it.
        autostart: true,
        autostop: false,
        ports: [
          { port: 443, handlers: ['tls', 'http'] },
          { port: 80, handlers: ['http'], force_https: true },
        ],
        checks: [
          {
            type: 'http',
            port: o.daemonPort,
            method: 'GET',
            path: '/__preview/health',
            interval: '15s',
            timeout: '5s',
            grace_period: '30s',
          },
        ],
      },
    ],
    // A crashed daemon restarts twice; after that the machine is gone and reconciliation re-places it.
    restart: { policy: 'on-failure', max_retries: 2 },
    auto_destroy: true,
    stop_config: { signal: 'SIGTERM', timeout: '10s' },
  };
}
