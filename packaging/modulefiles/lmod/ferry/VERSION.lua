-- -*- lua -*-
-- Lmod modulefile for ferry @VERSION@. The tarball's install.sh writes it
-- with @PREFIX@ replaced by the install prefix; copy it into your site's
-- module tree as ferry/@VERSION@.lua (or pass --modulefiles-lua DIR).

local version = "@VERSION@"
local root    = "@PREFIX@"

whatis("Name: ferry")
whatis("Version: " .. version)
whatis("Category: data transfer")
whatis("Description: endpoint daemon for research data transfer (like Globus Connect Personal)")
whatis("URL: https://example.invalid/ferry")

help([[
ferry ]] .. version .. [[: move research data between endpoints, in parallel,
encrypted, checksummed and restartable, reaching only the paths you allow.

  ferry -setup      # once: register this machine with your hub
  ferry -start &    # run the endpoint daemon while you work
  ferry -stop       # stop it when done (ferry -status shows its state)

On a login node the daemon stops when your session ends unless you run it
with nohup/tmux or `ferry -start -detach`. Several endpoints: -dir DIR.
Which paths transfers may reach: ~/.ferry/config-paths (man config-paths).
More: man ferry, ferry -help, ]] .. root .. [[/share/doc/ferry/hpc.md
]])

family("ferry")

-- Your site's hub, so users need neither --hub nor --hub-ca for
-- `ferry -setup` and `ferry login`: uncomment and fill in. FERRY_HUB_CA is
-- the hub's CA certificate (the ca.crt that `ferry-hub init` wrote; check
-- its SHA-256 fingerprint against the one init printed), needed when the
-- hub's certificate comes from its own CA; keep it where users can read it
-- and outside the versioned prefix, so it outlives upgrades.
-- A setup key still names its own hub.
-- setenv("FERRY_HUB",    "https://ferry-hub.example.org:8443")
-- setenv("FERRY_HUB_CA", "/opt/ferry/hub-ca.crt")

prepend_path("PATH",    pathJoin(root, "bin"))
-- An empty MANPATH element stands for the system's man pages: keep them
-- reachable when MANPATH was unset (else it would hold only ferry's).
if (os.getenv("MANPATH") or "") == "" then
    append_path("MANPATH", "")
end
prepend_path("MANPATH", pathJoin(root, "share/man"))
-- zsh finds _ferry here (for shells started, or compinit run, after loading).
prepend_path("FPATH",   pathJoin(root, "share/zsh/site-functions"))

-- bash: the one-dash verbs and options, then file names. (With the
-- bash-completion package, share/bash-completion/completions/ferry is the
-- fuller script; source it from ~/.bashrc to use it instead.)
complete("bash", "ferry", "-o default -W '-setup -start -stop -status -pause -unpause -version -help -dir -detach -restrict-paths -debug -trace paths'")
