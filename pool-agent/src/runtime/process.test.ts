import { describe, expect, it } from 'vitest';
import { listeningPort } from './process.ts';

describe("the daemon's listening line", () => {
  it('gives the port of the JSON `listening` line only', () => {
    expect(
      listeningPort('{"level":"info","time":1,"msg":"listening","port":41234,"template":"vite-react"}'),
    ).toBe(41234);
    expect(listeningPort('{"level":"info","msg":"phase","phase":"starting"}')).toBeUndefined();
    expect(listeningPort('{"msg":"listening","port":"80"}')).toBeUndefined();
    expect(listeningPort('vite listening on port 5173')).toBeUndefined();
    expect(listeningPort('{"msg":"listening", broken')).toBeUndefined();
  });
});
