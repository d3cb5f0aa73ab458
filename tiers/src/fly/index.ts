/**
 * The fly tier (Node only: imported as `@preview/tiers/fly` so browser bundles of `@preview/tiers`
 * never pull in `ws` or `node:crypto`).
 */
export * from './config.ts';
export * from './fly-tier.ts';
export * from './machines-client.ts';
export * from './retry.ts';
export * from './spec.ts';
