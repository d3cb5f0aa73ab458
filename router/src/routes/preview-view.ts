import type { AccessTokens } from '../auth/access-token.ts';
import type { Session } from '../store/sessions.ts';

/** What {@link createPreviewView} needs. */
export interface PreviewViewDeps {
  accessTokens: Pick<AccessTokens, 'sign'>;
  /** `http://<id>.preview.localhost:8787` (embedded) or `https://<id>.<PREVIEW_DOMAIN>`. */
  previewOrigin: (previewId: string) => string;
  /** Life of the `link` token in `previewUrl`, ms. */
  previewTokenTtlMs: number;
}

/** A session as the API shows it (`PreviewView` in schemas.ts). */
export interface PreviewViewBody {
  id: string;
  state: Session['state'];
  template: Session['template'];
  tier: Session['tier'];
  placement: Record<string, unknown> | null;
  classification: Record<string, unknown>;
  reasons: Session['reasons'];
  previewUrl: string | null;
  error: Session['error'];
  lastSeq: Session['lastSeq'];
  /** The editor's app id the preview belongs to (`POST /v1/previews` `projectId`), or null. */
  projectId: Session['projectId'];
  createdAt: string;
  updatedAt: string;
}

/** States in which a preview has no sandbox to link to. */
const GONE = ['ended', 'failed', 'stopping'];

/** How many (preview, user) link tokens a view keeps for reuse; the oldest goes first. */
const LINK_CACHE_SIZE = 10_000;

/**
 * The API view of a session. `previewUrl` carries a `link` token with at least half of its life
 * (`previewTokenTtlMs`) left: one signed for the same preview and user is reused until then, so
 * polling a preview or listing many does not sign a token per preview per request. `previewUrl` is
 * `null` for the browser tier (the preview runs in the editor's page), for a preview not yet placed,
 * and for one that is ended, failed or stopping. Dates are ISO 8601 strings.
 */
export function createPreviewView(deps: PreviewViewDeps): (s: Session) => Promise<PreviewViewBody> {
  /** `<preview id> <user id>` → its link token and when (epoch ms) to sign a new one. */
  const links = new Map<string, { token: string; renewAt: number }>();
  const linkToken = async (s: Session) => {
    const key = `${s.id} ${s.userId}`;
    const now = Date.now();
    const kept = links.get(key);
    if (kept && now < kept.renewAt) return kept.token;
    const token = await deps.accessTokens.sign({
      previewId: s.id,
      userId: s.userId,
      kind: 'link',
      ttlMs: deps.previewTokenTtlMs,
    });
    links.delete(key);
    if (links.size >= LINK_CACHE_SIZE) links.delete(links.keys().next().value as string);
    links.set(key, { token, renewAt: now + deps.previewTokenTtlMs / 2 });
    return token;
  };
  return async (s) => {
    let previewUrl: string | null = null;
    if (s.tier && s.tier !== 'browser' && !GONE.includes(s.state))
      previewUrl = `${deps.previewOrigin(s.id)}/?token=${await linkToken(s)}`;
    else links.delete(`${s.id} ${s.userId}`);
    return {
      id: s.id,
      state: s.state,
      template: s.template,
      tier: s.tier,
      placement: s.placement as Record<string, unknown> | null,
      classification: s.classification as Record<string, unknown>,
      reasons: s.reasons,
      previewUrl,
      error: s.error,
      lastSeq: s.lastSeq,
      projectId: s.projectId,
      createdAt: s.createdAt.toISOString(),
      updatedAt: s.updatedAt.toISOString(),
    };
  };
}
