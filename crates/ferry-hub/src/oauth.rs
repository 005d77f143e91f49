//! OAuth2 authorization server: /authorize, /token, /revoke (to be written).
