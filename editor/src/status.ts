import type { PreviewView } from '@preview/browser-runtime';

/** One placement verdict as the router reports it. */
export interface Reason {
  tier: string;
  outcome: string;
  reason: string;
}

/** What the status bar shows; every field is kept until replaced (reasons survive later events). */
export interface StatusView {
  state: string;
  tier: string | null;
  node: string;
  reasons: Reason[];
  phase: string;
  error: string;
  sync: string;
  /** Last edit → update time, ms (the sandbox's `hmr` frame, or the browser runtime's apply). */
  updateMs: number | undefined;
  updateKind: string;
  note: string;
}

/** The status bar (tier, node, placement reasons, state, last edit → update) and the log panel. */
export class StatusBar {
  view: StatusView = StatusBar.empty();
  #lines: string[] = [];

  constructor(
    private readonly el: HTMLElement,
    private readonly logEl: HTMLElement,
  ) {}

  static empty(): StatusView {
    return {
      state: '',
      tier: null,
      node: '',
      reasons: [],
      phase: '',
      error: '',
      sync: '',
      updateMs: undefined,
      updateKind: '',
      note: '',
    };
  }

  /** Clears everything (a new project), with `note` shown. */
  reset(note: string): void {
    this.view = { ...StatusBar.empty(), note };
    this.#lines = [];
    this.logEl.textContent = '';
    this.render();
  }

  set(patch: Partial<StatusView>): void {
    this.view = { ...this.view, ...patch };
    this.render();
  }

  /** Takes state, tier, node, reasons and error from a preview as the API returns it. */
  showPreview(p: PreviewView): void {
    const placement = (p.placement ?? {}) as { nodeId?: string; nodeName?: string; runtime?: string };
    this.set({
      state: p.state,
      tier: p.tier,
      node: placement.nodeName ?? placement.nodeId ?? placement.runtime ?? '',
      reasons: (p['reasons'] as Reason[] | undefined) ?? this.view.reasons,
      error: p.error ?? '',
      note: '',
    });
  }

  /** Appends log lines (the last 500 are kept). */
  log(lines: string[]): void {
    this.#lines.push(...lines);
    if (this.#lines.length > 500) this.#lines.splice(0, this.#lines.length - 500);
    this.logEl.textContent = this.#lines.join('\n');
    this.logEl.scrollTop = this.logEl.scrollHeight;
  }

  render(): void {
    const v = this.view;
    const out: string[] = [];
    const head: string[] = [];
    if (v.state) head.push(`state: ${v.state}${v.tier ? ` on ${v.tier}` : ''}`);
    if (v.node) head.push(`node: ${v.node}`);
    if (v.sync) head.push(`sync: ${v.sync}`);
    if (v.updateMs !== undefined)
      head.push(`last edit → update: ${Math.round(v.updateMs)} ms (${v.updateKind})`);
    if (head.length) out.push(head.join(' · '));
    if (v.phase) out.push(`status: ${v.phase}`);
    if (v.error) out.push(`error: ${v.error}`);
    if (v.reasons.length)
      out.push(`placement:\n${v.reasons.map((r) => `  ${r.tier}: ${r.outcome} — ${r.reason}`).join('\n')}`);
    if (v.note) out.push(v.note);
    this.el.textContent = out.join('\n');
    this.el.dataset['state'] = v.state;
    this.el.dataset['updateMs'] = v.updateMs === undefined ? '' : String(Math.round(v.updateMs));
  }
}
