import { ConfigError } from '@preview/tiers';
import Docker from 'dockerode';
import type { Logger } from 'pino';
import type { AgentConfig } from './config.ts';
import { createDockerRuntime } from './runtime/docker.ts';
import { createProcessRuntime } from './runtime/process.ts';
import type { ContainerRuntime } from './runtime/types.ts';

/** Whether the Docker engine at `socketPath` answers and holds `image`. */
export async function dockerUsable(socketPath: string, image: string): Promise<boolean> {
  const docker = new Docker({ socketPath });
  try {
    await docker.ping();
    await docker.getImage(image).inspect();
    return true;
  } catch {
    return false;
  }
}

/**
 * The runtime `config.AGENT_RUNTIME` names (`auto`: Docker when usable, else host processes).
 *
 * @throws ConfigError (`invalid_config`) for the process runtime without `DAEMON_BUNDLE`.
 * @example
 * const runtime = await buildRuntime(loadConfig({ AGENT_RUNTIME: 'auto', DAEMON_BUNDLE: bundle }), log);
 */
export async function buildRuntime(config: AgentConfig, log: Logger): Promise<ContainerRuntime> {
  let kind = config.AGENT_RUNTIME;
  if (kind === 'auto') {
    kind = (await dockerUsable(config.DOCKER_SOCKET, config.PREVIEW_IMAGE)) ? 'docker' : 'process';
    log.info({ runtime: kind }, 'runtime chosen');
  }
  if (kind === 'process') {
    if (!config.DAEMON_BUNDLE)
      throw new ConfigError('invalid_config', 'DAEMON_BUNDLE: required with AGENT_RUNTIME=process');
    return createProcessRuntime({
      daemonBundle: config.DAEMON_BUNDLE,
      templatesDir: config.PROCESS_TEMPLATES_DIR,
      workDir: config.PROCESS_WORK_DIR,
      sandbox: config.PROCESS_SANDBOX,
      uid: config.PREVIEW_UID,
      log,
    });
  }
  return createDockerRuntime({
    socketPath: config.DOCKER_SOCKET,
    node: config.NODE_NAME,
    image: config.PREVIEW_IMAGE,
    network: config.PREVIEW_NETWORK,
    upstream: config.PREVIEW_UPSTREAM,
    uid: config.PREVIEW_UID,
    memoryMiB: config.PREVIEW_MEMORY_MIB,
    cpus: config.PREVIEW_CPUS,
    pidsLimit: config.PREVIEW_PIDS_LIMIT,
    cpuGroup: { name: config.SANDBOX_CGROUP, shares: config.SANDBOX_CPU_SHARES },
    tmpfsMiB: config.PREVIEW_TMPFS_MIB,
    logMaxSize: config.PREVIEW_LOG_MAX_SIZE,
    logMaxFile: config.PREVIEW_LOG_MAX_FILE,
    ociRuntime: config.PREVIEW_OCI_RUNTIME,
    labels: config.PREVIEW_LABELS,
    disk: {
      sizeMiB: config.PREVIEW_DISK_MB,
      backend: config.PREVIEW_DISK_BACKEND,
      dir: config.PREVIEW_DISK_DIR,
    },
    npmCache:
      config.PREVIEW_NPM_CACHE === 'shared'
        ? { mode: 'shared', volume: config.PREVIEW_NPM_CACHE_VOLUME }
        : { mode: config.PREVIEW_NPM_CACHE },
    log,
  });
}
