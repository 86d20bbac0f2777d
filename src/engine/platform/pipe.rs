//! The channel between the unelevated front end and the elevated helper on
//! Windows: one named pipe per run.
//!
//! The front end creates the pipe under a random 128-bit name, as the first
//! and only instance, refusing remote clients, with a DACL that lets in only
//! the current user and elevated administrators (the helper runs elevated,
//! as the same user, or as the administrator who approved the UAC prompt).
//! It then starts the helper with the pipe's name and its own process id;
//! once connected, each side checks the other's process id: the front end
//! that the client is the helper it launched, the helper that the server is
//! the parent it was given. Protocol frames then flow as on Linux's
//! stdin/stdout. Both ends use overlapped I/O, so one thread can wait for a
//! cancel frame while another writes events.
//!
//! Names, arguments and checks are plain functions tested everywhere; the
//! Win32 calls are in the `windows` submodule, tested under wine.

/// Prefix of every persnap pipe name.
pub const PIPE_PREFIX: &str = r"\\.\pipe\persnap-";

/// The pipe name for a random 128-bit value.
pub fn pipe_name(random: u128) -> String {
    format!("{PIPE_PREFIX}{random:032x}")
}

/// A fresh random pipe name.
pub fn random_pipe_name() -> String {
    pipe_name(uuid::Uuid::new_v4().as_u128())
}

/// Accept only names persnap makes: the prefix and 32 lower-case hex digits.
pub fn is_valid_pipe_name(name: &str) -> bool {
    name.strip_prefix(PIPE_PREFIX).is_some_and(|hex| {
        hex.len() == 32
            && hex
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    })
}

/// The security descriptor (SDDL) of the pipe: protected DACL, full access
/// for `user_sid` and for elevated members of BUILTIN\Administrators (a
/// filtered, unelevated token carries that group as deny-only, so it does
/// not match), nothing for anyone else.
pub fn pipe_sddl(user_sid: &str) -> String {
    format!("D:P(A;;GA;;;{user_sid})(A;;GA;;;BA)")
}

/// What the helper needs to reach its caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HelperArgs {
    pub pipe: String,
    pub parent_pid: u32,
}

/// The helper's command line after the program name: `--pipe NAME
/// --parent-pid PID`, exactly; anything else is refused.
pub fn parse_helper_args(args: &[String]) -> Result<Option<HelperArgs>, String> {
    match args {
        [] => Ok(None),
        [flag_pipe, pipe, flag_pid, pid] if flag_pipe == "--pipe" && flag_pid == "--parent-pid" => {
            if !is_valid_pipe_name(pipe) {
                return Err(format!("{pipe:?} is not a persnap pipe name"));
            }
            let parent_pid = pid
                .parse::<u32>()
                .ok()
                .filter(|p| *p != 0)
                .ok_or_else(|| format!("{pid:?} is not a process id"))?;
            Ok(Some(HelperArgs {
                pipe: pipe.clone(),
                parent_pid,
            }))
        }
        _ => Err(
            "usage: persnap-helper [--pipe \\\\.\\pipe\\persnap-<32 hex digits> --parent-pid PID]"
                .into(),
        ),
    }
}

/// The command line the front end gives the helper.
pub fn helper_command_line(args: &HelperArgs) -> String {
    format!("--pipe {} --parent-pid {}", args.pipe, args.parent_pid)
}

/// The process at the other end must be the one expected.
pub fn check_peer(role: &str, expected_pid: u32, actual_pid: u32) -> Result<(), String> {
    if expected_pid == actual_pid {
        Ok(())
    } else {
        Err(format!(
            "the {role} on the pipe is process {actual_pid}, not the expected process {expected_pid}; refusing to talk to it"
        ))
    }
}

#[cfg(windows)]
pub mod windows;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_random_128_bit_and_validated() {
        let a = random_pipe_name();
        assert!(is_valid_pipe_name(&a), "{a}");
        assert_ne!(a, random_pipe_name());
        assert_eq!(
            pipe_name(0xab),
            format!(r"\\.\pipe\persnap-{}ab", "0".repeat(30))
        );
        for bad in [
            r"\\.\pipe\persnap-",
            r"\\.\pipe\persnap-XYZ00000000000000000000000000000",
            r"\\server\pipe\persnap-0123456789abcdef0123456789abcdef",
            r"\\.\pipe\other-0123456789abcdef0123456789abcdef",
            r"\\.\pipe\persnap-0123456789abcdef0123456789abcdef\..",
            r"\\.\pipe\persnap-0123456789ABCDEF0123456789ABCDEF",
        ] {
            assert!(!is_valid_pipe_name(bad), "{bad}");
        }
    }

    #[test]
    fn the_dacl_names_only_the_user_and_elevated_administrators() {
        let sddl = pipe_sddl("S-1-5-21-1-2-3-1001");
        assert!(
            sddl.starts_with("D:P("),
            "protected DACL, no inherited entries: {sddl}"
        );
        assert_eq!(sddl.matches("(A;").count(), 2);
        assert!(sddl.contains("(A;;GA;;;S-1-5-21-1-2-3-1001)") && sddl.contains("(A;;GA;;;BA)"));
        assert!(
            !sddl.contains("WD") && !sddl.contains("AU") && !sddl.contains("AN"),
            "no Everyone, Authenticated Users, Anonymous"
        );
    }

    #[test]
    fn helper_arguments_round_trip_and_refuse_anything_else() {
        let args = HelperArgs {
            pipe: pipe_name(7),
            parent_pid: 4242,
        };
        let line: Vec<String> = helper_command_line(&args)
            .split(' ')
            .map(String::from)
            .collect();
        assert_eq!(parse_helper_args(&line).unwrap(), Some(args));
        assert_eq!(
            parse_helper_args(&[]).unwrap(),
            None,
            "no arguments: stdin/stdout (Linux)"
        );
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        assert!(
            parse_helper_args(&s(&["--pipe", r"\\.\pipe\evil", "--parent-pid", "1"]))
                .unwrap_err()
                .contains("not a persnap pipe")
        );
        assert!(
            parse_helper_args(&s(&["--pipe", &pipe_name(1), "--parent-pid", "0"]))
                .unwrap_err()
                .contains("not a process id")
        );
        assert!(
            parse_helper_args(&s(&["--pipe", &pipe_name(1)]))
                .unwrap_err()
                .contains("usage")
        );
        assert!(
            parse_helper_args(&s(&["--pipe", &pipe_name(1), "--parent-pid", "5", "--x"])).is_err()
        );
    }

    #[test]
    fn peers_are_checked() {
        assert!(check_peer("helper", 10, 10).is_ok());
        assert!(
            check_peer("helper", 10, 11)
                .unwrap_err()
                .contains("not the expected process 10")
        );
    }
}
