//! `handoff man`: the man page, rendered by clap_mangen from the same
//! definitions as `--help`, with the sections clap does not know.

use super::command;

/// The man page's sections that clap does not know.
const MAN_EXTRA: &str = r#".SH "EXIT STATUS"
.TP
\fB0\fR
Stopped as asked (SIGTERM, idle exit), or \fBcheck\fR found nothing wrong.
.TP
\fB1\fR
A failure while running.
.TP
\fB2\fR
The command line is wrong.
.TP
\fB69\fR
A listening socket could not be had (address in use, or not ours).
.TP
\fB78\fR
The configuration is wrong: the root, a certificate or key, the log file,
or options that do not go together.
.SH SIGNALS
.TP
\fBSIGTERM\fR, \fBSIGINT\fR
Stop accepting, answer what is in flight (up to \fB--shutdown-timeout\fR), exit.
.TP
\fBSIGHUP\fR
Reload the TLS certificates; a broken file keeps the old ones. Under
systemd, RELOADING=1 then READY=1 with the outcome in STATUS.
.TP
\fBSIGUSR2\fR
Replace the binary with the one now at its path, moving listeners,
connections and WebSocket sessions (as \fBhandoff upgrade\fR). Under
systemd, RELOADING=1, then the new process's MAINPID= and READY=1 (or,
if it fails, READY=1 again from the old one).
.TP
\fBSIGUSR1\fR
Open the log file again (after logrotate moved it), writing
"SIGUSR1: the log file is opened again" as the new file's first line, and
pass the signal on to the WebSocket workers (\fBsystemctl kill --kill-who=main -s USR1
handoff\fR: the main process alone, as programs of exec routes would die
of it).
.SH ENVIRONMENT
Each option of \fBserve\fR and \fBcheck\fR is also a variable:
\fBHANDOFF_\fR and its long name in capitals, \fB-\fR as \fB_\fR
(\fBHANDOFF_MAX_BODY\fR). A flag wins over its variable, and a variable
over the \fB--config\fR file.
.SH FILES
.TP
\fI/etc/handoff/handoff.toml\fR
The settings of handoff.service (\fB--config\fR): each key a long option.
.TP
\fI/etc/default/handoff\fR
Its HANDOFF_* variables (\fBEnvironmentFile=\fR).
.TP
\fI/var/log/handoff\fR, \fI/etc/logrotate.d/handoff\fR
Where \fBlog-file\fR may point (the unit's \fBLogsDirectory=\fR), and its rotation.
.TP
\fI/usr/share/handoff/site\fR
The demo site, served when no \fB--root\fR is given.
.TP
\fI/usr/lib/systemd/system/handoff.service\fR, \fIhandoff.socket\fR, \fIhandoff-control.socket\fR
The units: socket activation, readiness, reload by upgrade.
.SH "SEE ALSO"
\fBsystemd.socket\fR(5), \fBxinetd.conf\fR(5), \fBsystemd-socket-activate\fR(1)
"#;

pub(super) fn man(w: &mut dyn std::io::Write) -> std::io::Result<()> {
    let m = clap_mangen::Man::new(command());
    m.render_title(w)?;
    m.render_name_section(w)?;
    m.render_synopsis_section(w)?;
    m.render_description_section(w)?;
    m.render_options_section(w)?;
    m.render_subcommands_section(w)?;
    w.write_all(MAN_EXTRA.as_bytes())?;
    m.render_version_section(w)
}
