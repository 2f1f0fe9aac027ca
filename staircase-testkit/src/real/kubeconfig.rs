//! The token-auth file given to kube-apiserver and the kubeconfig given to clients and to
//! kube-controller-manager.

use std::path::Path;

/// The user name the admin token authenticates as (member of `system:masters`).
pub const ADMIN_USER: &str = "staircase-admin";

/// Writes kube-apiserver's `--token-auth-file`: one `system:masters` token.
pub fn write_token_file(path: &Path, token: &str) -> std::io::Result<()> {
    std::fs::write(
        path,
        format!("{token},{ADMIN_USER},{ADMIN_USER}-uid,\"system:masters\"\n"),
    )
}

/// Writes a kubeconfig for `server` (an `https://` URL) that trusts `ca` and authenticates with
/// the bearer `token`.
pub fn write_kubeconfig(path: &Path, server: &str, ca: &Path, token: &str) -> std::io::Result<()> {
    let text = format!(
        "apiVersion: v1
kind: Config
clusters:
- name: staircase-real
  cluster:
    server: {server}
    certificate-authority: {ca}
users:
- name: {ADMIN_USER}
  user:
    token: {token}
contexts:
- name: staircase-real
  context:
    cluster: staircase-real
    user: {ADMIN_USER}
current-context: staircase-real
",
        ca = ca.display()
    );
    std::fs::write(path, text)
}
