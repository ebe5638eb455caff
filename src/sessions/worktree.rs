//! A session's `git worktree`, made before the session is created and
//! removed again if `up` fails after making it.
//!
//! git is run as an argument vector (never through a shell), with `--`
//! before every path, so a branch or path from a file is one argument and
//! nothing else.

use std::path::Path;
use std::process::Stdio;

use super::file::WorktreeSpec;

/// A worktree `up` made (what undoing it removes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Made {
    pub repo: String,
    pub path: String,
    /// The branch, if `up` created it too.
    pub new_branch: Option<String>,
}

/// Why a worktree could not be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("git worktree {path}: {message}")]
pub struct WorktreeError {
    pub path: String,
    pub message: String,
}

/// Makes the worktree `spec` of repository `repo`, unless its path already
/// is a git working tree (then `None`: nothing made, nothing to undo).
pub async fn ensure(repo: &str, spec: &WorktreeSpec) -> Result<Option<Made>, WorktreeError> {
    let error = |message: String| WorktreeError {
        path: spec.path.clone(),
        message,
    };
    if Path::new(&spec.path).exists() {
        return match git(&spec.path, &["rev-parse", "--is-inside-work-tree"]).await {
            Ok(_) => Ok(None),
            Err(_) => Err(error(
                "the path exists and is not a git working tree; remove it or choose another path"
                    .into(),
            )),
        };
    }
    let reference = format!("refs/heads/{}", spec.branch);
    let has_branch = git(repo, &["rev-parse", "--verify", "--quiet", &reference])
        .await
        .is_ok();
    let result = if has_branch {
        git(repo, &["worktree", "add", "--", &spec.path, &spec.branch]).await
    } else {
        let mut args = vec!["worktree", "add", "-b", &spec.branch, "--", &spec.path];
        if let Some(base) = &spec.base {
            args.push(base);
        }
        git(repo, &args).await
    };
    result.map_err(error)?;
    Ok(Some(Made {
        repo: repo.to_owned(),
        path: spec.path.clone(),
        new_branch: (!has_branch).then(|| spec.branch.clone()),
    }))
}

/// Removes a worktree [`ensure`] made (and the branch it created).
pub async fn remove(made: &Made) -> Result<(), WorktreeError> {
    let error = |message: String| WorktreeError {
        path: made.path.clone(),
        message,
    };
    git(
        &made.repo,
        &["worktree", "remove", "--force", "--", &made.path],
    )
    .await
    .map_err(error)?;
    if let Some(branch) = &made.new_branch {
        git(&made.repo, &["branch", "-D", "--", branch])
            .await
            .map_err(error)?;
    }
    Ok(())
}

/// Runs `git -C dir ARGS…`; its stdout, or what it said on stderr.
async fn git(dir: &str, args: &[&str]) -> Result<String, String> {
    let output = tokio::process::Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output()
        .await
        .map_err(|err| format!("could not run git: {err}"))?;
    if output.status.success() {
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    } else {
        Err(String::from_utf8_lossy(&output.stderr).trim().to_owned())
    }
}
