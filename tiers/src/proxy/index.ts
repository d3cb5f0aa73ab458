export {
  ACCESS_COOKIE,
  CREDENTIAL_HEADERS,
  crossSiteCookie,
  forwardRequestHeaders,
  forwardResponseHeaders,
  HOP_BY_HOP_HEADERS,
  readCookie,
  withoutCookie,
} from './headers.ts';
export {
  createReverseProxy,
  injectAfterHead,
  type ProxyTarget,
  type ReverseProxy,
  type WebTarget,
} from './reverse-proxy.ts';
