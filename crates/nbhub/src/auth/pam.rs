//! PAM authentication (Unix passwords, LDAP/Kerberos via sssd, …) by FFI to libpam.
//!
//! [`authenticate`] runs `pam_start` → `pam_authenticate` → `pam_acct_mgmt` → `pam_end` for one
//! user, answering the PAM conversation with the username and password. PAM calls **block** (and
//! `pam_unix` sleeps about two seconds after a failure, `pam_faildelay` in `/etc/pam.d/login` three),
//! so async callers must run it with `tokio::task::spawn_blocking`.
//!
//! Linking needs `libpam.so` (Debian/Ubuntu: `libpam0g-dev`; RHEL: `pam-devel`).

// The workspace denies unsafe code; this module is the FFI boundary to libpam (a C library that
// the `libc` crate does not cover), which cannot be called without `unsafe`. Every unsafe block
// is small and carries a SAFETY comment.
#![allow(unsafe_code)]

use std::ffi::{c_char, c_int, c_void, CStr, CString};

// ---------------------------------------------------------------------------------------------
// libpam declarations (from <security/pam_appl.h> and <security/_pam_types.h>, Linux-PAM)
// ---------------------------------------------------------------------------------------------

const PAM_SUCCESS: c_int = 0;
const PAM_SYSTEM_ERR: c_int = 4;
const PAM_BUF_ERR: c_int = 5;
const PAM_PERM_DENIED: c_int = 6;
const PAM_AUTH_ERR: c_int = 7;
const PAM_CRED_INSUFFICIENT: c_int = 8;
const PAM_AUTHINFO_UNAVAIL: c_int = 9;
const PAM_USER_UNKNOWN: c_int = 10;
const PAM_MAXTRIES: c_int = 11;
const PAM_NEW_AUTHTOK_REQD: c_int = 12;
const PAM_ACCT_EXPIRED: c_int = 13;
const PAM_CONV_ERR: c_int = 19;
const PAM_AUTHTOK_EXPIRED: c_int = 27;

const PAM_DISALLOW_NULL_AUTHTOK: c_int = 0x0001;

const PAM_PROMPT_ECHO_OFF: c_int = 1;
const PAM_PROMPT_ECHO_ON: c_int = 2;
const PAM_ERROR_MSG: c_int = 3;
const PAM_TEXT_INFO: c_int = 4;

const PAM_MAX_NUM_MSG: c_int = 32;

/// Opaque `pam_handle_t`.
#[repr(C)]
struct PamHandle {
    _private: [u8; 0],
}

#[repr(C)]
struct PamMessage {
    msg_style: c_int,
    msg: *const c_char,
}

#[repr(C)]
struct PamResponse {
    resp: *mut c_char,
    resp_retcode: c_int,
}

type ConvFn = extern "C" fn(
    num_msg: c_int,
    msg: *mut *const PamMessage,
    resp: *mut *mut PamResponse,
    appdata_ptr: *mut c_void,
) -> c_int;

#[repr(C)]
struct PamConv {
    conv: ConvFn,
    appdata_ptr: *mut c_void,
}

#[link(name = "pam")]
extern "C" {
    fn pam_start(
        service_name: *const c_char,
        user: *const c_char,
        pam_conversation: *const PamConv,
        pamh: *mut *mut PamHandle,
    ) -> c_int;
    fn pam_end(pamh: *mut PamHandle, pam_status: c_int) -> c_int;
    fn pam_authenticate(pamh: *mut PamHandle, flags: c_int) -> c_int;
    fn pam_acct_mgmt(pamh: *mut PamHandle, flags: c_int) -> c_int;
    fn pam_strerror(pamh: *mut PamHandle, errnum: c_int) -> *const c_char;
}

// ---------------------------------------------------------------------------------------------
// Public API
// ---------------------------------------------------------------------------------------------

/// Hint given when the hub lacks the privileges `pam_unix` needs.
pub const NO_PERMISSION_HINT: &str =
    "the hub must run as root, or its user must be in the shadow group, to check Unix passwords";

/// Why PAM refused a login.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PamError {
    /// Wrong password or unknown user (deliberately not saying which).
    #[error("authentication failed")]
    AuthFailed,
    /// The account has expired.
    #[error("account expired")]
    AccountExpired,
    /// The password has expired and must be changed first (`PAM_NEW_AUTHTOK_REQD`).
    #[error("password expired, it must be changed before logging in")]
    PasswordExpired,
    /// The account may not log in (locked, denied by `pam_access`, unknown to the account modules…).
    #[error("account not allowed to log in")]
    AccountInvalid,
    /// The hub process cannot read `/etc/shadow`, so `pam_unix` cannot check any password but
    /// perhaps its own user's. Log `hint` for the administrator; tell the user only that login
    /// failed.
    #[error("cannot check passwords: {hint}")]
    NoPermission { hint: &'static str },
    /// Any other PAM failure: the PAM return code and `pam_strerror`'s text.
    #[error("PAM error {0}: {1}")]
    Other(i32, String),
}

/// Authenticate `username` with `password` through the PAM service `service` (a file in
/// `/etc/pam.d/`; JupyterHub's default is `login`, a missing file falls back to `other`), then
/// check the account (`pam_acct_mgmt`: expiry, access rules).
///
/// Blocking: call it from `tokio::task::spawn_blocking`. Empty passwords are refused
/// (`PAM_DISALLOW_NULL_AUTHTOK`), as are usernames or passwords containing NUL bytes
/// ([`PamError::AuthFailed`]). No session is opened and no credentials are established.
pub fn authenticate(service: &str, username: &str, password: &str) -> Result<(), PamError> {
    let service_c = CString::new(service).map_err(|_| {
        PamError::Other(
            PAM_SYSTEM_ERR,
            "PAM service name contains a NUL byte".into(),
        )
    })?;
    if username.is_empty() || password.is_empty() {
        return Err(PamError::AuthFailed);
    }
    let (Ok(user_c), Ok(password_c)) = (CString::new(username), CString::new(password)) else {
        return Err(PamError::AuthFailed);
    };
    let creds = Credentials {
        username: user_c,
        password: Secret(password_c),
    };

    let conv = PamConv {
        conv: conversation,
        // The conversation only reads through this pointer (as `&Credentials`).
        appdata_ptr: &creds as *const Credentials as *mut c_void,
    };
    let mut handle: *mut PamHandle = std::ptr::null_mut();
    // SAFETY: all pointers are valid NUL-terminated strings / live structs for the call;
    // `conv` and `creds` outlive the handle, which is ended below in every path before they drop.
    let rc = unsafe {
        pam_start(
            service_c.as_ptr(),
            creds.username.as_ptr(),
            &conv,
            &mut handle,
        )
    };
    if rc != PAM_SUCCESS || handle.is_null() {
        // pam_start failed: no usable handle, so no pam_strerror with it (NULL is accepted).
        let text = strerror(std::ptr::null_mut(), rc);
        if !handle.is_null() {
            // SAFETY: handle came from pam_start and is ended exactly once.
            unsafe { pam_end(handle, rc) };
        }
        return Err(PamError::Other(rc, text));
    }

    // SAFETY: handle is a live handle from pam_start, used on this thread only.
    let mut rc = unsafe { pam_authenticate(handle, PAM_DISALLOW_NULL_AUTHTOK) };
    let result = if rc != PAM_SUCCESS {
        Err(map_auth_error(rc, strerror(handle, rc)))
    } else {
        // SAFETY: as above.
        rc = unsafe { pam_acct_mgmt(handle, PAM_DISALLOW_NULL_AUTHTOK) };
        if rc == PAM_SUCCESS {
            Ok(())
        } else {
            Err(map_account_error(rc, strerror(handle, rc)))
        }
    };
    // SAFETY: handle is live and ended exactly once; it is not used afterwards.
    let end_rc = unsafe { pam_end(handle, rc) };
    if end_rc != PAM_SUCCESS {
        tracing::warn!("pam_end returned {end_rc}");
    }
    if let Err(e) = &result {
        match e {
            PamError::NoPermission { hint } => {
                tracing::error!("PAM authentication of {username:?} failed: {hint}")
            }
            PamError::Other(code, text) => {
                tracing::warn!("PAM authentication of {username:?} failed: {text} ({code})")
            }
            other => tracing::info!("PAM authentication of {username:?} failed: {other}"),
        }
    }
    drop(creds);
    result
}

// ---------------------------------------------------------------------------------------------
// Internals
// ---------------------------------------------------------------------------------------------

/// A password buffer that is overwritten with zeros when dropped (best effort).
struct Secret(CString);

impl Drop for Secret {
    fn drop(&mut self) {
        let mut bytes = std::mem::take(&mut self.0).into_bytes_with_nul();
        bytes.fill(0);
        std::hint::black_box(&bytes);
    }
}

struct Credentials {
    username: CString,
    password: Secret,
}

fn strerror(handle: *mut PamHandle, code: c_int) -> String {
    // SAFETY: pam_strerror accepts any code and (Linux-PAM) a NULL or live handle; it returns a
    // pointer to a static string (or NULL), which is copied at once.
    let ptr = unsafe { pam_strerror(handle, code) };
    if ptr.is_null() {
        return format!("PAM error {code}");
    }
    // SAFETY: non-NULL pointer to a NUL-terminated static string from libpam.
    unsafe { CStr::from_ptr(ptr) }
        .to_string_lossy()
        .into_owned()
}

/// Can this process read the shadow password file (root, or member of the `shadow` group)?
fn can_read_shadow() -> bool {
    std::fs::File::open("/etc/shadow").is_ok()
}

fn map_auth_error(code: c_int, text: String) -> PamError {
    map_auth_error_with(code, text, can_read_shadow())
}

fn map_auth_error_with(code: c_int, text: String, shadow_readable: bool) -> PamError {
    match code {
        // pam_unix without access to /etc/shadow answers these for every password; we cannot tell
        // a wrong password from a missing privilege, so point the administrator at the likelier one.
        PAM_AUTH_ERR | PAM_AUTHINFO_UNAVAIL if !shadow_readable => PamError::NoPermission {
            hint: NO_PERMISSION_HINT,
        },
        PAM_AUTH_ERR | PAM_USER_UNKNOWN | PAM_MAXTRIES | PAM_CRED_INSUFFICIENT => {
            PamError::AuthFailed
        }
        PAM_ACCT_EXPIRED => PamError::AccountExpired,
        PAM_NEW_AUTHTOK_REQD | PAM_AUTHTOK_EXPIRED => PamError::PasswordExpired,
        PAM_PERM_DENIED => PamError::AccountInvalid,
        _ => PamError::Other(code, text),
    }
}

fn map_account_error(code: c_int, text: String) -> PamError {
    match code {
        PAM_ACCT_EXPIRED => PamError::AccountExpired,
        PAM_NEW_AUTHTOK_REQD | PAM_AUTHTOK_EXPIRED => PamError::PasswordExpired,
        PAM_PERM_DENIED | PAM_USER_UNKNOWN | PAM_AUTH_ERR => PamError::AccountInvalid,
        _ => PamError::Other(code, text),
    }
}

/// Copy `s` into a buffer from `malloc` (PAM frees responses with `free`). NULL on failure.
fn malloc_cstr(s: &CStr) -> *mut c_char {
    let bytes = s.to_bytes_with_nul();
    // SAFETY: plain allocation of bytes.len() (> 0) bytes; checked for NULL.
    let buf = unsafe { libc::malloc(bytes.len()) } as *mut c_char;
    if !buf.is_null() {
        // SAFETY: buf has room for bytes.len() bytes and does not overlap `bytes`.
        unsafe { std::ptr::copy_nonoverlapping(bytes.as_ptr() as *const c_char, buf, bytes.len()) };
    }
    buf
}

/// Free a response array built by `conversation` (zeroing the secrets first).
///
/// SAFETY (caller): `responses` was allocated by `calloc(n, size_of::<PamResponse>())` and each
/// non-NULL `resp` by `malloc_cstr`; nothing else holds them.
unsafe fn free_responses(responses: *mut PamResponse, n: usize) {
    for i in 0..n {
        // SAFETY: i < n, within the calloc'd array (caller's contract).
        let r = unsafe { &mut *responses.add(i) };
        if !r.resp.is_null() {
            // SAFETY: r.resp is a NUL-terminated malloc'd string we wrote.
            let len = unsafe { libc::strlen(r.resp) };
            // SAFETY: overwrite our own buffer of len bytes, then free it once.
            unsafe {
                std::ptr::write_bytes(r.resp, 0, len);
                libc::free(r.resp as *mut c_void);
            }
            r.resp = std::ptr::null_mut();
        }
    }
    // SAFETY: the array came from calloc and is freed once.
    unsafe { libc::free(responses as *mut c_void) };
}

/// The PAM conversation: answers PAM_PROMPT_ECHO_OFF with the password and PAM_PROMPT_ECHO_ON
/// with the username; logs PAM_ERROR_MSG / PAM_TEXT_INFO; refuses anything else.
extern "C" fn conversation(
    num_msg: c_int,
    msg: *mut *const PamMessage,
    resp: *mut *mut PamResponse,
    appdata_ptr: *mut c_void,
) -> c_int {
    // Never unwind into C.
    std::panic::catch_unwind(|| converse(num_msg, msg, resp, appdata_ptr)).unwrap_or(PAM_CONV_ERR)
}

fn converse(
    num_msg: c_int,
    msg: *mut *const PamMessage,
    resp: *mut *mut PamResponse,
    appdata_ptr: *mut c_void,
) -> c_int {
    if num_msg <= 0 || num_msg > PAM_MAX_NUM_MSG || msg.is_null() || resp.is_null() {
        return PAM_CONV_ERR;
    }
    if appdata_ptr.is_null() {
        return PAM_CONV_ERR;
    }
    // SAFETY: appdata_ptr is the `&Credentials` given to pam_start in `authenticate`, alive for
    // the whole PAM transaction and only read here.
    let creds = unsafe { &*(appdata_ptr as *const Credentials) };
    let n = num_msg as usize; // 1..=32, checked above

    // SAFETY: calloc of n zeroed PamResponse structs (NULL resp, 0 retcode); checked for NULL.
    let responses =
        unsafe { libc::calloc(n, std::mem::size_of::<PamResponse>()) } as *mut PamResponse;
    if responses.is_null() {
        return PAM_BUF_ERR;
    }

    for i in 0..n {
        // Linux-PAM passes `msg` as an array of `num_msg` pointers to messages.
        // SAFETY: i < num_msg, so msg.add(i) is inside the array libpam gave us.
        let m = unsafe { *msg.add(i) };
        if m.is_null() {
            // SAFETY: `responses` is ours, built above.
            unsafe { free_responses(responses, n) };
            return PAM_CONV_ERR;
        }
        // SAFETY: m points to a valid pam_message owned by libpam for this call.
        let (style, text_ptr) = unsafe { ((*m).msg_style, (*m).msg) };
        let text = if text_ptr.is_null() {
            String::new()
        } else {
            // SAFETY: PAM message texts are NUL-terminated strings.
            unsafe { CStr::from_ptr(text_ptr) }
                .to_string_lossy()
                .into_owned()
        };
        let answer: Option<&CStr> = match style {
            PAM_PROMPT_ECHO_OFF => Some(creds.password.0.as_c_str()),
            PAM_PROMPT_ECHO_ON => Some(creds.username.as_c_str()),
            PAM_ERROR_MSG => {
                tracing::warn!("PAM: {}", text.trim_end());
                None
            }
            PAM_TEXT_INFO => {
                tracing::info!("PAM: {}", text.trim_end());
                None
            }
            other => {
                tracing::warn!("PAM conversation: unsupported message style {other}");
                // SAFETY: `responses` is ours, built above.
                unsafe { free_responses(responses, n) };
                return PAM_CONV_ERR;
            }
        };
        if let Some(answer) = answer {
            let buf = malloc_cstr(answer);
            if buf.is_null() {
                // SAFETY: `responses` is ours, built above.
                unsafe { free_responses(responses, n) };
                return PAM_BUF_ERR;
            }
            // SAFETY: i < n, inside our array.
            unsafe { (*responses.add(i)).resp = buf };
        }
    }
    // SAFETY: resp is the non-NULL out-pointer libpam gave us; ownership of the array and its
    // strings passes to libpam, which frees them.
    unsafe { *resp = responses };
    PAM_SUCCESS
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::{Command, Stdio};
    use std::time::Instant;

    fn is_root() -> bool {
        // SAFETY: geteuid has no preconditions and cannot fail.
        unsafe { libc::geteuid() == 0 }
    }

    /// A throw-away Unix user, deleted on drop (even when the test fails).
    struct TempUser {
        name: String,
    }

    impl TempUser {
        fn create(password: &str) -> TempUser {
            let name = format!("nbhubpam{}", std::process::id() % 100_000);
            let _ = Command::new("userdel")
                .args(["-r", &name])
                .stderr(Stdio::null())
                .status();
            let st = Command::new("useradd")
                .args(["-M", "-s", "/usr/sbin/nologin", &name])
                .status()
                .expect("useradd");
            assert!(st.success(), "useradd failed");
            let user = TempUser { name };
            let mut child = Command::new("chpasswd")
                .stdin(Stdio::piped())
                .spawn()
                .expect("chpasswd");
            {
                use std::io::Write;
                let stdin = child.stdin.as_mut().expect("stdin");
                writeln!(stdin, "{}:{}", user.name, password).expect("write chpasswd");
            }
            assert!(child.wait().expect("chpasswd").success(), "chpasswd failed");
            user
        }
    }

    impl Drop for TempUser {
        fn drop(&mut self) {
            let _ = Command::new("userdel").arg(&self.name).status();
        }
    }

    fn chage(args: &[&str]) {
        let st = Command::new("chage").args(args).status().expect("chage");
        assert!(st.success(), "chage {args:?} failed");
    }

    fn skip_unless_root(test: &str) -> bool {
        if !is_root() {
            eprintln!("!!!!!!!! SKIPPING {test}: needs root (creates a Unix user) !!!!!!!!");
            return true;
        }
        let have_tools = ["useradd", "chpasswd", "chage", "userdel"]
            .iter()
            .all(|tool| {
                Command::new(tool)
                    .arg("--help")
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .status()
                    .is_ok()
            });
        if !have_tools {
            eprintln!("!!!!!!!! SKIPPING {test}: useradd/chpasswd/chage/userdel missing !!!!!!!!");
            return true;
        }
        false
    }

    /// `other` = common-auth/common-account without the 3 s pam_faildelay of `login`.
    const SERVICE: &str = "other";

    #[test]
    fn real_unix_user() {
        if skip_unless_root("pam::tests::real_unix_user") {
            return;
        }
        let password = "c0rrect horse-battery!";
        let user = TempUser::create(password);

        authenticate(SERVICE, &user.name, password).expect("right password");

        let t = Instant::now();
        assert_eq!(
            authenticate(SERVICE, &user.name, "wrong password"),
            Err(PamError::AuthFailed)
        );
        eprintln!("failed auth took {:?}", t.elapsed());

        // unknown user: same answer as a wrong password
        assert_eq!(
            authenticate(SERVICE, "nbhub-no-such-user-xyz", password),
            Err(PamError::AuthFailed)
        );

        // password must be changed (chage -d 0): pam_unix answers PAM_NEW_AUTHTOK_REQD
        chage(&["-d", "0", &user.name]);
        assert_eq!(
            authenticate(SERVICE, &user.name, password),
            Err(PamError::PasswordExpired)
        );
        chage(&["-d", "-1", &user.name]);
        authenticate(SERVICE, &user.name, password).expect("password usable again");

        // expired account (chage -E 1 = expired on 1970-01-02). pam_unix says PAM_ACCT_EXPIRED,
        // but Debian's common-account ignores it and lets pam_deny answer PAM_PERM_DENIED.
        chage(&["-E", "1", &user.name]);
        let r = authenticate(SERVICE, &user.name, password);
        assert!(
            matches!(r, Err(PamError::AccountExpired | PamError::AccountInvalid)),
            "{r:?}"
        );
        drop(user);
    }

    #[test]
    fn rejects_bad_input_without_pam() {
        assert_eq!(authenticate(SERVICE, "", "x"), Err(PamError::AuthFailed));
        assert_eq!(authenticate(SERVICE, "root", ""), Err(PamError::AuthFailed));
        assert_eq!(
            authenticate(SERVICE, "ro\0ot", "x"),
            Err(PamError::AuthFailed)
        );
        assert_eq!(
            authenticate(SERVICE, "root", "x\0y"),
            Err(PamError::AuthFailed)
        );
        assert!(matches!(
            authenticate("lo\0gin", "root", "x"),
            Err(PamError::Other(_, _))
        ));
    }

    #[test]
    fn error_mapping() {
        let t = || String::from("text");
        assert_eq!(
            map_auth_error_with(PAM_AUTH_ERR, t(), true),
            PamError::AuthFailed
        );
        assert_eq!(
            map_auth_error_with(PAM_USER_UNKNOWN, t(), true),
            PamError::AuthFailed
        );
        assert_eq!(
            map_auth_error_with(PAM_AUTH_ERR, t(), false),
            PamError::NoPermission {
                hint: NO_PERMISSION_HINT
            }
        );
        assert_eq!(
            map_auth_error_with(PAM_AUTHINFO_UNAVAIL, t(), false),
            PamError::NoPermission {
                hint: NO_PERMISSION_HINT
            }
        );
        assert_eq!(
            map_auth_error_with(PAM_AUTHINFO_UNAVAIL, t(), true),
            PamError::Other(PAM_AUTHINFO_UNAVAIL, t())
        );
        assert_eq!(
            map_account_error(PAM_ACCT_EXPIRED, t()),
            PamError::AccountExpired
        );
        assert_eq!(
            map_account_error(PAM_NEW_AUTHTOK_REQD, t()),
            PamError::PasswordExpired
        );
        assert_eq!(
            map_account_error(PAM_PERM_DENIED, t()),
            PamError::AccountInvalid
        );
        assert_eq!(
            map_account_error(PAM_SYSTEM_ERR, t()),
            PamError::Other(PAM_SYSTEM_ERR, t())
        );
        assert!(NO_PERMISSION_HINT.contains("shadow group"));
        assert!(!strerror(std::ptr::null_mut(), PAM_AUTH_ERR).is_empty());
    }

    #[test]
    fn conversation_answers_prompts() {
        let creds = Credentials {
            username: CString::new("alice").unwrap(),
            password: Secret(CString::new("s3cret").unwrap()),
        };
        let p1 = CString::new("Password: ").unwrap();
        let p2 = CString::new("login: ").unwrap();
        let p3 = CString::new("Have a nice day").unwrap();
        let msgs = [
            PamMessage {
                msg_style: PAM_PROMPT_ECHO_OFF,
                msg: p1.as_ptr(),
            },
            PamMessage {
                msg_style: PAM_PROMPT_ECHO_ON,
                msg: p2.as_ptr(),
            },
            PamMessage {
                msg_style: PAM_TEXT_INFO,
                msg: p3.as_ptr(),
            },
        ];
        let mut ptrs: Vec<*const PamMessage> = msgs.iter().map(|m| m as *const _).collect();
        let mut resp: *mut PamResponse = std::ptr::null_mut();
        let rc = conversation(
            3,
            ptrs.as_mut_ptr(),
            &mut resp,
            &creds as *const Credentials as *mut c_void,
        );
        assert_eq!(rc, PAM_SUCCESS);
        assert!(!resp.is_null());
        // SAFETY: resp is the 3-element array conversation allocated.
        unsafe {
            let r = std::slice::from_raw_parts(resp, 3);
            assert_eq!(CStr::from_ptr(r[0].resp).to_str().unwrap(), "s3cret");
            assert_eq!(CStr::from_ptr(r[1].resp).to_str().unwrap(), "alice");
            assert!(r[2].resp.is_null());
            free_responses(resp, 3);
        }
        // unsupported style and bad counts are refused
        let bad = [PamMessage {
            msg_style: 99,
            msg: p1.as_ptr(),
        }];
        let mut bad_ptrs: Vec<*const PamMessage> = bad.iter().map(|m| m as *const _).collect();
        let mut resp: *mut PamResponse = std::ptr::null_mut();
        let appdata = &creds as *const Credentials as *mut c_void;
        assert_eq!(
            conversation(1, bad_ptrs.as_mut_ptr(), &mut resp, appdata),
            PAM_CONV_ERR
        );
        assert!(resp.is_null());
        assert_eq!(
            conversation(0, bad_ptrs.as_mut_ptr(), &mut resp, appdata),
            PAM_CONV_ERR
        );
        assert_eq!(
            conversation(33, bad_ptrs.as_mut_ptr(), &mut resp, appdata),
            PAM_CONV_ERR
        );
    }
}
