import { type Agent, createAgent, loadConfig } from '@preview/pool-agent';
import pino from 'pino';
import { type Output, printJson, println } from '../output.ts';

/** Flags of `preview agent`; each overrides the pool agent's variable of the same meaning. */
export interface AgentFlags {
  /** The router to register with (ROUTER_URL). */
  router: string;
  /** The router's join token (ROUTER_JOIN_TOKEN; `npm start` keeps its own in DATA_DIR/local-secrets.json). */
  joinToken: string;
  /** NODE_NAME. */
  name?: string;
  /** AGENT_PORT (0: any free port). */
  port?: string;
  /** AGENT_HOST. */
  host?: string;
  /** AGENT_RUNTIME: docker, process or auto. */
  runtime?: string;
}

/**
 * The pool agent's environment for the flags: `env` (every pool-agent variable, pool-agent/README.md)
 * with the flags over it.
 */
export function agentEnv(
  flags: AgentFlags,
  env: Record<string, string | undefined>,
): Record<string, string | undefined> {
  return {
    ...env,
    ROUTER_URL: flags.router,
    ROUTER_JOIN_TOKEN: flags.joinToken,
    ...(flags.name !== undefined ? { NODE_NAME: flags.name } : {}),
    ...(flags.port !== undefined ? { AGENT_PORT: flags.port } : {}),
    ...(flags.host !== undefined ? { AGENT_HOST: flags.host } : {}),
    ...(flags.runtime !== undefined ? { AGENT_RUNTIME: flags.runtime } : {}),
  };
}

/**
 * `preview agent --router URL --join-token T`: runs a pool agent (what `pool-agent/src/main.ts` and
 * the compose cluster run) registered with the router, until `signal` aborts (SIGINT / SIGTERM);
 * its sandboxes keep running and are adopted on the next start. Logs go to stderr; stdout gets the
 * node's id, API URL and runtime once registered (`--json`: one document).
 *
 * @throws ConfigError (`invalid_config`) naming the variable or flag that does not parse.
 */
export async function agentCommand(
  o: Output,
  flags: AgentFlags,
  env: Record<string, string | undefined>,
  signal: AbortSignal,
): Promise<number> {
  const config = loadConfig(agentEnv(flags, env));
  const log = pino({ level: config.LOG_LEVEL }, pino.destination(2));
  const agent: Agent = await createAgent({ config, log });
  const info = {
    nodeId: agent.nodeId,
    name: config.NODE_NAME,
    url: agent.url,
    runtime: agent.runtime.kind,
    router: config.ROUTER_URL,
  };
  if (o.json) printJson(o, info);
  else
    println(
      o,
      `node ${info.name} (${info.nodeId}) registered with ${info.router}\n  agent API: ${info.url}\n  runtime: ${info.runtime}\nCtrl-C stops it (its sandboxes keep running and are adopted on the next start)`,
    );
  await new Promise<void>((resolve) => {
    if (signal.aborted) resolve();
    else signal.addEventListener('abort', () => resolve(), { once: true });
  });
  log.info('stopping (sandboxes keep running and are adopted on the next start)');
  await agent.close();
  return 0;
}
