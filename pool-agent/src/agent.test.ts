import { describe, expect, it } from 'vitest';
import { sandboxEnvOf } from './agent.ts';
import { loadConfig } from './config.ts';

describe('sandboxEnvOf', () => {
  it("gives every sandbox the node's readiness budget as the daemon's deadline for the app's port", () => {
    const config = loadConfig({ AGENT_TOKEN: 'x'.repeat(32), READY_TIMEOUT_MS: '240000' });
    expect(sandboxEnvOf(config, { HTTP_PROXY: 'http://10.0.0.1:3128' })).toEqual({
      HTTP_PROXY: 'http://10.0.0.1:3128',
      PREVIEW_APP_READY_TIMEOUT_MS: '240000',
    });
    const withCa = loadConfig({ AGENT_TOKEN: 'x'.repeat(32), PREVIEW_NODE_EXTRA_CA_CERTS: '/ca.pem' });
    expect(sandboxEnvOf(withCa, {})).toEqual({
      PREVIEW_APP_READY_TIMEOUT_MS: '60000',
      NODE_EXTRA_CA_CERTS: '/ca.pem',
    });
  });
});
