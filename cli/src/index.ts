export * from './api-client.ts';
export * from './commands/agent.ts';
export * from './commands/previews.ts';
export * from './commands/up.ts';
export * from './doctor/checks.ts';
export * from './doctor/run.ts';
export * from './output.ts';
export { type CliContext, runCli } from './program.ts';
export * from './up/progress.ts';
