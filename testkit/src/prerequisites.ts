/**
 * Fails the surrounding suite, naming what is missing, when a prerequisite of a test is absent (a
 * build output, the installed templates, the preview image, a tool). Call it in `beforeEach`: every
 * test of the suite then fails with the message (vitest counts the tests of a suite whose
 * `beforeAll` failed as skipped, so guard a `beforeAll` with the same condition instead). A test that needs something this machine can
 * provide never skips (issue 12: `npm test` builds what the tests need; a skip would hide that it
 * did not).
 *
 * @param missing one reason per prerequisite: a string says what is missing and how to get it;
 *   `undefined` or `false` means it is there.
 * @throws Error `missing prerequisite: <reason>; <reason>` when any reason is a string.
 * @example
 * beforeEach(() => requirePrerequisites(existsSync(bundle) ? undefined : `daemon bundle ${bundle}: run scripts/test-env.sh`));
 */
export function requirePrerequisites(...missing: Array<string | undefined | false>): void {
  const reasons = missing.filter((m): m is string => typeof m === 'string' && m.length > 0);
  if (reasons.length) throw new Error(`missing prerequisite: ${reasons.join('; ')}`);
}
