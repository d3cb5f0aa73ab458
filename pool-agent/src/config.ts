import { defineConfig, TemplateName } from '@preview/tiers';
import { z } from 'zod';
import { SANDBOX_CGROUP, SANDBOX_CGROUP_RE } from './runtime/cpu-weight.ts';

const hostPort = z
  .string()
  .regex(/^[^:\s]+:\d{1,5}$/, 'must be host:port, e.g. 127.0.0.1:5432')
  .transform((s) => {
    const i = s.lastIndexOf(':');
    return { host: s.slice(0, i), port: Number(s.slice(i + 1)) };
  });

/** `vite-react=2,vite-vanilla=1`: warm-pool target size per template. */
const poolSizes = z.string().transform((s, ctx) => {
  const out: Partial<Record<TemplateName, number>> = {};
  for (const part of s
    .split(',')
    .map((p) => p.trim())
    .filter(Boolean)) {
    const [name, n] = part.split('=');
    const t = TemplateName.safeParse(name);
    const size = Number(n);
    if (!t.success || !Number.isInteger(size) || size < 0) {
      ctx.addIssue({ code: 'custom', message: `bad entry "${part}": want <template>=<count>` });
      return z.NEVER;
    }
    out[t.data] = size;
  }
  return out;
});

/** `vite-react,vite-vanilla`: template names, each once. */
const templateList = z.string().transform((s, ctx) => {
  const out: TemplateName[] = [];
  for (const part of s
    .split(',')
    .map((p) => p.trim())
    .filter(Boolean)) {
    const t = TemplateName.safeParse(part);
    if (!t.success) {
      ctx.addIssue({ code: 'custom', message: `unknown template "${part}"` });
      return z.NEVER;
    }
    if (!out.includes(t.data)) out.push(t.data);
  }
  if (out.length === 0) {
    ctx.addIssue({ code: 'custom', message: 'name at least one template, e.g. vite-react' });
    return z.NEVER;
  }
  return out;
});

/** Labels the runtime sets itself: a sandbox's node, session, template and pool. */
const RESERVED_LABELS = ['preview.node', 'preview.session', 'preview.template', 'preview.pool'];

/** `preview.test=1,team=web`: extra labels on every sandbox container, each key once. */
const labelList = z.string().transform((s, ctx) => {
  const out: Record<string, string> = {};
  for (const part of s
    .split(',')
    .map((p) => p.trim())
    .filter(Boolean)) {
    const i = part.indexOf('=');
    const key = i > 0 ? part.slice(0, i) : '';
    const value = i > 0 ? part.slice(i + 1) : '';
    if (!/^[a-z0-9]([a-z0-9._-]{0,126}[a-z0-9])?$/.test(key) || !/^[^\s,]{0,256}$/.test(value)) {
      ctx.addIssue({
        code: 'custom',
        message: `bad entry "${part}": want <key>=<value>, the key in lower-case letters, digits, ".", "_", "-" (rule label_format)`,
      });
      return z.NEVER;
    }
    if (RESERVED_LABELS.includes(key) || key in out) {
      ctx.addIssue({
        code: 'custom',
        message: `label "${key}": ${key in out ? 'given twice' : 'set by the agent itself'} (rule label_reserved)`,
      });
      return z.NEVER;
    }
    out[key] = value;
  }
  return out;
});

/**
 * The agent's configuration, parsed once in `main.ts` from the environment.
 *
 * @example
 * const config = loadConfig({ AGENT_TOKEN: 'x'.repeat(32), PREVIEW_IMAGE: 'preview-base:dev' });
 */
export const AgentConfigSchema = z.object({
  /** Address and port the agent's API listens on. 0 picks a free port. */
  AGENT_HOST: z.string().default('127.0.0.1'),
  AGENT_PORT: z.coerce.number().int().min(0).max(65535).default(7070),
  /** The URL the router reaches this agent at (sent at registration). */
  AGENT_PUBLIC_URL: z.url().optional(),
  /** Node name (registration) and the `preview.node` label value. */
  NODE_NAME: z
    .string()
    .regex(/^[a-zA-Z0-9._-]{1,64}$/, 'letters, digits, ".", "_" or "-" only, at most 64')
    .default('node-1'),
  /** Standalone: the bearer token the API accepts. With ROUTER_URL, the router's credential is used instead. */
  AGENT_TOKEN: z.string().min(16, 'must be at least 16 characters').optional(),
  ROUTER_URL: z.url().optional(),
  ROUTER_JOIN_TOKEN: z.string().min(16).max(512).optional(),
  /**
   * `docker`, `process` (host processes, sandboxed with bwrap when present), or `auto`: Docker when the
   * engine answers and has PREVIEW_IMAGE, else host processes (the embedded default).
   */
  AGENT_RUNTIME: z.enum(['docker', 'process', 'auto']).default('docker'),
  DOCKER_SOCKET: z.string().default('/var/run/docker.sock'),
  PREVIEW_IMAGE: z.string().default('preview-base:dev'),
  /** OCI runtime for previews, e.g. `runsc` (gVisor); used only when the engine lists it. */
  PREVIEW_OCI_RUNTIME: z.string().optional(),
  PREVIEW_NETWORK: z.string().default('preview-net'),
  /**
   * How the agent reaches each sandbox's daemon port: `address` (the container's own address on
   * PREVIEW_NETWORK: no userland-proxy hop on every request, HMR message and sync frame), `published`
   * (127.0.0.1:<published port>, through Docker's docker-proxy; for engines whose bridge the host
   * does not route to, e.g. Docker Desktop), or `auto` (address when the host reaches it).
   */
  PREVIEW_UPSTREAM: z.enum(['auto', 'address', 'published']).default('auto'),
  /**
   * Extra labels on every sandbox container, `key=value,key=value` (e.g. `preview.test=1`, which the
   * test suites sweep by). The agent's own labels (`preview.node`, `.session`, `.template`, `.pool`)
   * cannot be set. Docker runtime only.
   */
  PREVIEW_LABELS: labelList.default({}),
  PREVIEW_UID: z.coerce.number().int().min(1, 'must not be 0 (root)').default(1000),
  /** Per-preview limits. Memory is also the swap limit (no swap). */
  PREVIEW_MEMORY_MIB: z.coerce.number().int().min(32).default(512),
  PREVIEW_CPUS: z.coerce.number().positive().max(64).default(1),
  /**
   * CPU weight of all sandboxes together against the 1024 of each process outside them (cgroup v1
   * `cpu.shares`; v2 `cpu.weight` in proportion): under contention the router, agents, Postgres and
   * Redis run first, so the API answers while sandboxes boot. The agent sets it on the sandboxes'
   * shared cgroup (SANDBOX_CGROUP) when it may write the host's cgroup files, else it warns what to
   * set. 0 leaves sandboxes in the engine's default cgroup. Docker runtime only.
   */
  SANDBOX_CPU_SHARES: z.coerce
    .number()
    .int()
    .refine((n) => n === 0 || (n >= 2 && n <= 262_144), 'must be 0 (off) or from 2 to 262144')
    .default(128),
  /** Name of the sandboxes' shared cgroup (`/previews`, or `previews.slice` under systemd). */
  SANDBOX_CGROUP: z
    .string()
    .regex(SANDBOX_CGROUP_RE, 'letters a-z, digits and _ only (a dash nests a systemd slice)')
    .default(SANDBOX_CGROUP),
  PREVIEW_PIDS_LIMIT: z.coerce.number().int().min(16).default(256),
  PREVIEW_TMPFS_MIB: z.coerce.number().int().min(1).default(64),
  PREVIEW_LOG_MAX_SIZE: z.string().default('1m'),
  PREVIEW_LOG_MAX_FILE: z.coerce.number().int().min(1).default(2),
  /** npm cache for reinstalls: `tmpfs` (private, from the registry), `shared` (named volume, offline), `image` (read-only). */
  PREVIEW_NPM_CACHE: z.enum(['tmpfs', 'shared', 'image']).default('tmpfs'),
  PREVIEW_NPM_CACHE_VOLUME: z.string().default('preview-npm-cache'),
  /** NODE_EXTRA_CA_CERTS for every sandbox (a path inside the image), for networks that intercept TLS. */
  PREVIEW_NODE_EXTRA_CA_CERTS: z.string().optional(),
  /**
   * What previews may reach on the internet (the deny list of metadata, private ranges, the host's
   * ports and other previews always holds): `registry-only` only the npm registry, through the
   * agent's proxy; `open` anything public; `none` nothing.
   */
  PREVIEW_EGRESS: z.enum(['open', 'registry-only', 'none']).default('registry-only'),
  /** The registry the proxy lets through (registry-only); a non-default one is also `npm_config_registry`. */
  PREVIEW_EGRESS_REGISTRY: z.url({ protocol: /^https?$/ }).default('https://registry.npmjs.org/'),
  /**
   * The proxy's port on the preview network's gateway; 0 picks a free one at each start (as the
   * database forwarder does). Set one to keep adopted sandboxes' proxy address across agent restarts.
   */
  PREVIEW_EGRESS_PROXY_PORT: z.coerce.number().int().min(0).max(65535).default(0),
  /** Refuse to start when the egress rules cannot be set (iptables missing, not root); `false` warns instead. */
  PREVIEW_EGRESS_ENFORCE: z
    .enum(['true', 'false', '1', '0'])
    .default('true')
    .transform((v) => v === 'true' || v === '1'),
  /** How often the egress rules are checked and re-applied when missing (0: only at start). */
  PREVIEW_EGRESS_CHECK_MS: z.coerce.number().int().min(0).default(30_000),
  /**
   * Size limit of each preview's /project in MiB (files, installed packages, anything app code writes):
   * past it writes fail with ENOSPC and the preview's status says the project is full.
   */
  PREVIEW_DISK_MB: z.coerce.number().int().min(16, 'must be at least 16').default(1024),
  /**
   * How /project is sized: `auto` (the first that works: `xfs` when the engine sizes volumes with XFS
   * project quota, `loop` an ext4 image per preview on a loop device when the agent is root, `tmpfs`),
   * or one of `xfs`, `loop`, `tmpfs` (in memory, counted in PREVIEW_MEMORY_MIB), `none` (no limit).
   */
  PREVIEW_DISK_BACKEND: z.enum(['auto', 'xfs', 'loop', 'tmpfs', 'none']).default('auto'),
  /** Where loop images are made (sparse, unlinked once attached: they take space only while in use). */
  PREVIEW_DISK_DIR: z.string().default('/var/lib/preview-agent/disks'),
  /** Total previews (warm + claimed) this node runs at most. */
  NODE_SLOTS: z.coerce.number().int().min(0).default(20),
  /**
   * Warm-pool targets, e.g. `vite-react=2,vite-vanilla=1` (production: 20 each). The default warms
   * each front-end template create-vite scaffolds for React, Vue and plain TypeScript.
   */
  WARM_POOL: poolSizes.default({
    'vite-react': 2,
    'vite-vanilla': 1,
    'vite-react-ts': 1,
    'vite-vue': 1,
    'vite-vue-ts': 1,
    'vite-vanilla-ts': 1,
  }),
  /** Most warm sandboxes starting at once (a refill after a burst of claims starts them in turns). */
  WARM_START_CONCURRENCY: z.coerce.number().int().min(1).default(2),
  /** How long a claim waits for the dev server to answer 200. */
  READY_TIMEOUT_MS: z.coerce.number().int().positive().default(60_000),
  /** `host:port` of Postgres on the host; previews reach it (and only it) through a forwarder. */
  PREVIEW_DATABASE_TARGET: hostPort.optional(),
  /** Host-process runtime: the daemon bundle to run, and the bwrap switch. */
  DAEMON_BUNDLE: z.string().optional(),
  PROCESS_SANDBOX: z.enum(['auto', 'bwrap', 'none']).default('auto'),
  PROCESS_WORK_DIR: z.string().optional(),
  /** Host-process runtime: the installed templates (`<dir>/<template>/node_modules`) the daemon seeds projects from. */
  PROCESS_TEMPLATES_DIR: z.string().optional(),
  /**
   * Host-process runtime: the templates' sources (the repo's `templates/`). When set, the agent
   * installs them into PROCESS_TEMPLATES_DIR at start (`npm ci` from each lockfile, once per change;
   * see `template-installs.ts`), and a template's warm pool and claims wait for its install.
   */
  PROCESS_TEMPLATES_SOURCE: z.string().optional(),
  /**
   * With PROCESS_TEMPLATES_SOURCE: the templates to install, e.g. `vite-react,vite-vanilla` (the warm
   * pools' first). Default: every template of the sources.
   */
  PROCESS_TEMPLATES: templateList.optional(),
  /** With PROCESS_TEMPLATES_SOURCE: NODE_EXTRA_CA_CERTS (a host path) for npm, where TLS is intercepted. */
  PROCESS_NPM_CA_CERTS: z.string().optional(),
  LOG_LEVEL: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
});
export type AgentConfig = z.output<typeof AgentConfigSchema>;

export const loadConfig = defineConfig(AgentConfigSchema);
