/**
 * Cleanup steps registered as they succeed and run once, in reverse; failures are gathered into one
 * `AggregateError`.
 *
 * @example
 * const cleanup = new Cleanup();
 * const c = await createContainer(); cleanup.add(() => c.remove());
 * await cleanup.run(); // repeat-safe
 */
export class Cleanup {
  #steps: Array<() => unknown | Promise<unknown>> = [];
  #ran = false;

  add(step: () => unknown | Promise<unknown>): void {
    this.#steps.push(step);
  }

  async run(): Promise<void> {
    if (this.#ran) return;
    this.#ran = true;
    const errors: unknown[] = [];
    for (const step of this.#steps.reverse()) {
      try {
        await step();
      } catch (e) {
        errors.push(e);
      }
    }
    this.#steps = [];
    if (errors.length) throw new AggregateError(errors, `${errors.length} cleanup step(s) failed`);
  }
}
