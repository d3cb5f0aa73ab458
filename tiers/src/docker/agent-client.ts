import { TierUnavailableError, TimeoutError } from '../errors.ts';
import type { TierCapacity } from '../types.ts';
import type { NodeCapacity } from '../wire.ts';

/** One pool agent: its id in the router's node table, its API URL and the bearer token it accepts. */
export interface AgentEndpoint {
  nodeId: string;
  url: string;
  token: string;
}

/**
 * One request to a pool agent's API (pool-agent/README.md) with its bearer token: resolves to the
 * status and the JSON body (undefined when empty or not JSON), whatever the status.
 * `o.timeoutMs` bounds the whole request, in ms.
 * @throws the caller's `signal.reason` when it aborted; `TimeoutError` (`timeout`) after `timeoutMs`;
 *   `TierUnavailableError` (`agent_unreachable`, tier `docker`) when the agent cannot be reached.
 *
 * @example
 * const { status, body } = await callAgent(fetch, node, 'GET', '/v1/capacity', { timeoutMs: 15_000 });
 */
export async function callAgent(
  f: typeof fetch,
  node: AgentEndpoint,
  method: string,
  path: string,
  o: { body?: unknown; signal?: AbortSignal | undefined; timeoutMs: number },
): Promise<{ status: number; body: unknown }> {
  const signals = [AbortSignal.timeout(o.timeoutMs)];
  if (o.signal) signals.push(o.signal);
  let res: Response;
  try {
    res = await f(`${node.url.replace(/\/$/, '')}${path}`, {
      method,
      headers: {
        authorization: `Bearer ${node.token}`,
        ...(o.body !== undefined ? { 'content-type': 'application/json' } : {}),
      },
      ...(o.body !== undefined ? { body: JSON.stringify(o.body) } : {}),
      signal: AbortSignal.any(signals),
    });
  } catch (e) {
    if (o.signal?.aborted) throw o.signal.reason;
    if ((e as Error).name === 'TimeoutError')
      throw new TimeoutError(
        'timeout',
        `pool agent ${node.nodeId} did not answer ${method} ${path} in time`,
        {
          cause: e,
        },
      );
    throw new TierUnavailableError(
      'agent_unreachable',
      `pool agent ${node.nodeId} unreachable: ${(e as Error).message}`,
      { tier: 'docker', cause: e },
    );
  }
  const text = await res.text();
  let body: unknown;
  try {
    body = text ? JSON.parse(text) : undefined;
  } catch {
    body = undefined;
  }
  return { status: res.status, body };
}

/**
 * The docker tier's capacity from what each live agent answered (`undefined`: it did not answer):
 * slots and free slots summed, warm containers summed per template.
 * @throws TierUnavailableError (`capacity_unknown`) when no answer has room and some agent did not
 *   answer: "full" only when every live agent said so (one that did not may have room, and its
 *   answer to a claim is the truth).
 */
export function sumCapacity(caps: ReadonlyArray<NodeCapacity | undefined>): TierCapacity {
  const out: TierCapacity = { available: 0, total: 0, warm: {} };
  for (const c of caps) {
    if (!c) continue;
    out.total += c.slots;
    out.available += Math.max(0, c.slots - c.used);
    for (const [t, n] of Object.entries(c.warm)) out.warm![t] = (out.warm![t] ?? 0) + n;
  }
  if (out.available === 0 && caps.some((c) => c === undefined))
    throw new TierUnavailableError('capacity_unknown', 'a pool agent did not answer its capacity', {
      tier: 'docker',
    });
  return out;
}
