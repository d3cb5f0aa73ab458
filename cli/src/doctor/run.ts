import { type Output, paint, printJson, println } from '../output.ts';
import {
  type Check,
  type CheckOutcome,
  DEFAULT_CHECKS,
  type DoctorContext,
  doctorContext,
} from './checks.ts';

/** One check's result as printed (and as `--json` shows it). */
export interface CheckResult extends CheckOutcome {
  name: string;
  required: boolean;
}

/** A doctor run: `ok` is false when a required check failed. */
export interface DoctorReport {
  ok: boolean;
  checks: CheckResult[];
}

/**
 * Runs `checks` one after the other against `ctx` (a check that throws counts as a `fail` with its
 * message). `ok` is false when a required check failed; `warn` and `skip` never fail the run.
 *
 * @default checks DEFAULT_CHECKS
 */
export async function runDoctor(
  ctx: DoctorContext,
  checks: readonly Check[] = DEFAULT_CHECKS,
): Promise<DoctorReport> {
  const results: CheckResult[] = [];
  for (const check of checks) {
    let outcome: CheckOutcome;
    try {
      outcome = await check.run(ctx);
    } catch (e) {
      outcome = { status: 'fail', detail: `the check failed: ${(e as Error).message}` };
    }
    results.push({ name: check.name, required: check.required, ...outcome });
  }
  return { ok: !results.some((r) => r.required && r.status === 'fail'), checks: results };
}

const LABEL: Record<CheckOutcome['status'], { text: string; style: 'green' | 'yellow' | 'red' | 'dim' }> = {
  ok: { text: 'ok', style: 'green' },
  warn: { text: 'warn', style: 'yellow' },
  fail: { text: 'FAIL', style: 'red' },
  skip: { text: 'skip', style: 'dim' },
};

/** Prints a report: a line per check, its advice indented under it, and a summary line. */
export function printDoctorReport(o: Output, report: DoctorReport): void {
  if (o.json) {
    printJson(o, report);
    return;
  }
  const width = Math.max(...report.checks.map((c) => c.name.length));
  for (const c of report.checks) {
    const label = LABEL[c.status];
    const optional = c.status === 'fail' && !c.required ? ' (optional)' : '';
    println(
      o,
      `${paint(o, label.style, label.text.padEnd(4))}  ${c.name.padEnd(width)}  ${c.detail}${optional}`,
    );
    for (const step of c.advice ?? []) println(o, `${' '.repeat(width + 8)}→ ${step}`);
  }
  const failed = report.checks.filter((c) => c.status === 'fail' && c.required).length;
  const warned = report.checks.filter((c) => c.status === 'warn').length;
  println(o);
  if (failed)
    println(
      o,
      paint(
        o,
        'red',
        `${failed} required check(s) failed: do what the arrows say, then run \`preview doctor\` again`,
      ),
    );
  else
    println(o, paint(o, 'green', `everything required is present${warned ? ` (${warned} warning(s))` : ''}`));
}

/** `preview doctor`: runs the checks against `env` and prints them; exit code 1 when a required one failed. */
export async function doctorCommand(
  o: Output,
  env: Record<string, string | undefined>,
  checks: readonly Check[] = DEFAULT_CHECKS,
): Promise<number> {
  const report = await runDoctor(doctorContext(env), checks);
  printDoctorReport(o, report);
  return report.ok ? 0 : 1;
}
