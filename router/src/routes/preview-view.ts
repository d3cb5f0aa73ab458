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

/**
 * The API view of a session. `previewUrl` carries a fresh `link` token and is `null` for the browser
 * tier (the preview runs in the editor's page), for a preview not yet placed, and for one that is
 * ended, failed or stopping. Dates are ISO 8601 strings.
 */
export function createPreviewView(deps: PreviewViewDeps): (s: Session) => Promise<PreviewViewBody> {
  return async (s) => {
    let previewUrl: string | null = null;
    if (s.tier && s.tier !== 'browser' && !GONE.includes(s.state)) {
      const token = await deps.accessTokens.sign({
        previewId: s.id,
        userId: s.userId,
        kind: 'link',
        ttlMs: deps.previewTokenTtlMs,
      });
      previewUrl = `${deps.previewOrigin(s.id)}/?token=${token}`;
    }
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
