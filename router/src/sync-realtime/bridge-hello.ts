/** A hello is small (a seq, a client id, an editor token); anything larger is not one and is not parsed here. */
export const HELLO_MAX_CHARS = 4096;

/**
 * A hello frame, with the editor token it carries taken out (the hub never sees it); `undefined` for
 * any other frame, for text that is not JSON, and for text longer than {@link HELLO_MAX_CHARS}.
 */
export function parseHello(text: string): { text: string; editorToken: string | undefined } | undefined {
  if (text.length > HELLO_MAX_CHARS) return undefined;
  let frame: { type?: unknown; editorToken?: unknown } | null;
  try {
    frame = JSON.parse(text) as typeof frame;
  } catch {
    return undefined;
  }
  if (frame?.type !== 'hello') return undefined;
  const { editorToken, ...hello } = frame;
  return {
    text: JSON.stringify(hello),
    editorToken: typeof editorToken === 'string' ? editorToken : undefined,
  };
}
