import {
  type Ack,
  CloseCodes,
  ConflictError,
  type FileBatch,
  NotFoundError,
  type ScriptRun,
  type TierStatus,
} from '@preview/tiers';
import type { Logger } from 'pino';
import { runScript } from './daemon-client.ts';
import type { WarmPools } from './pool.ts';
import type { PreviewRecord, PreviewTable } from './previews.ts';
import type { ContainerRuntime, SandboxExit } from './runtime/types.ts';

/** A preview's status as the agent answers it: `failed` marks a sandbox that is gone or dead. */
export type AgentStatus = TierStatus & { failed?: boolean };

/** What the lifecycle operations need from the rest of the agent. */
export interface LifecycleContext {
  runtime: Pick<ContainerRuntime, 'pause' | 'unpause' | 'remove' | 'logs'>;
  pools: Pick<WarmPools, 'forget' | 'populate'>;
  table: PreviewTable;
  log: Logger;
  /** Called when a preview moves to `failed` (its sandbox died), with how it exited. */
  onFailed?(p: PreviewRecord, exit: SandboxExit): void;
}

/** Lines of a failed sandbox's output kept and reported. */
const LOG_TAIL = 50;

/**
 * Everything done to a preview after its claim: edits, suspend / resume, destroy (repeat-safe), its
 * status and logs, and what happens when its sandbox dies.
 *
 * @example
 * const life = new PreviewLifecycle(ctx);
 * await life.apply('p1', { type: 'batch', seq: 1, ops }); // the daemon's applied ack
 * await life.destroy('p1'); // true, then false
 */
export class PreviewLifecycle {
  readonly #c: LifecycleContext;

  constructor(context: LifecycleContext) {
    this.#c = context;
  }

  /** @throws NotFoundError, ConflictError (failed / suspended), and what the daemon answers. */
  async apply(id: string, batch: FileBatch): Promise<Ack> {
    return await this.#c.table.routable(id).link.send(batch);
  }

  /** Runs the project's npm script `name` in the preview's sandbox (see `runScript`). */
  async runScript(id: string, name: string): Promise<ScriptRun> {
    const p = this.#c.table.routable(id);
    return await runScript(p.box.upstream, p.box.daemonToken, name);
  }

  async suspend(id: string): Promise<void> {
    const p = this.#notFailed(id);
    await this.#c.runtime.pause(p.box.id);
    p.state = { kind: 'suspended' };
    this.#c.log.info({ previewId: id, sandboxId: p.box.id }, 'preview suspended');
  }

  async resume(id: string): Promise<void> {
    const p = this.#notFailed(id);
    await this.#c.runtime.unpause(p.box.id);
    p.state = { kind: 'ready' };
    this.#c.log.info({ previewId: id, sandboxId: p.box.id }, 'preview resumed');
  }

  /**
   * Removes the preview and its sandbox; `false` for an unknown id. A failed preview's reason and
   * last output are kept (`status` still answers them).
   */
  async destroy(id: string): Promise<boolean> {
    const c = this.#c;
    const p = c.table.remove(id);
    if (!p) return false;
    p.link.close();
    for (const r of p.relays) r.close(CloseCodes.ended, 'preview destroyed');
    if (p.state.kind === 'failed')
      c.table.remember(id, {
        reason: p.state.reason,
        log: await c.runtime.logs(p.box.id, { tail: LOG_TAIL }).catch(() => []),
        at: Date.now(),
      });
    await c.runtime.remove(p.box.id);
    c.log.info({ previewId: id, sandboxId: p.box.id }, 'preview destroyed');
    void c.pools.populate();
    return true;
  }

  /**
   * What the preview is doing: a failed one with its reason and log (also after its sandbox is gone),
   * `suspended`, else the daemon's own status (its health when the status route does not answer).
   */
  async status(id: string): Promise<AgentStatus | undefined> {
    const c = this.#c;
    const p = c.table.find(id);
    if (!p) {
      const gone = c.table.remains(id);
      return gone && { phase: 'error', failed: true, message: gone.reason, log: gone.log };
    }
    if (p.state.kind === 'failed')
      return {
        phase: 'error',
        failed: true,
        message: p.state.reason,
        log: await c.runtime.logs(p.box.id, { tail: LOG_TAIL }),
      };
    if (p.state.kind === 'suspended') return { phase: 'suspended' };
    return await daemonStatus(p);
  }

  /** The last lines of the sandbox's output (a failed and removed one's kept lines). */
  async logs(id: string, tail: number): Promise<string[]> {
    const p = this.#c.table.find(id);
    if (p) return await this.#c.runtime.logs(p.box.id, { tail });
    const gone = this.#c.table.remains(id);
    if (!gone) throw new NotFoundError('preview_not_found', `no preview ${id} on this node`);
    return gone.log.slice(-tail);
  }

  /** A sandbox stopped: a warm one is replaced, a claimed one's preview fails with the reason. */
  onExit(exit: SandboxExit): void {
    const c = this.#c;
    if (c.pools.forget(exit.id)) {
      c.log.warn({ sandboxId: exit.id, reason: exit.reason }, 'warm sandbox exited; refilling');
      void c.runtime.remove(exit.id).then(() => c.pools.populate());
      return;
    }
    const p = c.table.bySandbox(exit.id);
    if (!p || !c.table.fail(p, exit.reason)) return;
    c.log.warn({ previewId: p.id, reason: exit.reason, oomKilled: exit.oomKilled }, 'preview failed');
    // Nothing answers on the link any more; stop reopening it.
    p.link.close();
    for (const r of p.relays) r.close(CloseCodes.ended, 'preview failed');
    c.onFailed?.(p, exit);
  }

  #notFailed(id: string): PreviewRecord {
    const p = this.#c.table.get(id);
    if (p.state.kind === 'failed')
      throw new ConflictError('preview_failed', `preview ${id} failed: ${p.state.reason}`);
    return p;
  }
}

/** The daemon's `/__preview/status`, else its health (ready on 200). */
async function daemonStatus(p: PreviewRecord): Promise<AgentStatus> {
  try {
    const res = await fetch(`${p.box.upstream}/__preview/status`, {
      headers: { authorization: `Bearer ${p.box.daemonToken}` },
      signal: AbortSignal.timeout(3000),
    });
    if (res.ok) {
      const s = (await res.json()) as TierStatus;
      return {
        phase: s.phase,
        ...(s.message ? { message: s.message } : {}),
        ...(s.log ? { log: s.log } : {}),
      };
    }
    await res.body?.cancel();
  } catch {
    /* fall back to health */
  }
  const h = await fetch(`${p.box.upstream}/__preview/health`, { signal: AbortSignal.timeout(3000) }).catch(
    () => undefined,
  );
  await h?.body?.cancel();
  return { phase: h?.status === 200 ? 'ready' : 'starting' };
}
