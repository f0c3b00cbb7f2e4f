/*
 * scripts/sanitizer-preload.c: preloaded after the ASan runtime into the
 * servers of make test SANITIZE=1 (scripts/lib.sh, sanitizer_setup).  It
 * works around two ways in which Debian's PostgreSQL, not built for the
 * sanitizers, trips their runtimes.
 *
 * A preloaded ASan runtime initializes itself at the process's first
 * malloc.  In PostgreSQL's programs that malloc comes from glibc's
 * newlocale(), called by libp11-kit's constructor (libpq and the server link
 * it through LDAP and GnuTLS), while newlocale() holds glibc's locale lock.
 * The runtime's start-up looks up swift_demangle with dlsym(); the failed
 * lookup leaves an error that it clears with dlerror(), which translates the
 * message and so takes the same lock again: the lock's state is corrupted
 * and the process hangs at its next locale call.  Defining the symbol makes
 * the lookup succeed.
 *
 * The UBSan runtime starts at its first report, in a backend, and reads its
 * options from /proc/self/environ, which PostgreSQL has overwritten by then
 * with the process title: UBSAN_OPTIONS would be lost.  The runtime also
 * asks the program for default options, which this file answers with
 * P2PAY_UBSAN_OPTIONS, given when it is compiled.  Next to gcc's ASan
 * runtime, UBSan writes its reports to stderr (the server's log) whatever
 * its log_path, but hands that log_path to ASan, whose reports then go
 * there: P2PAY_UBSAN_OPTIONS names ASan's directory.
 */
#include <stddef.h>
#include <stdint.h>

char	   *swift_demangle(const char *mangled, size_t mangled_length,
						   char *output, size_t *output_size, uint32_t flags);
const char *__ubsan_default_options(void);

/* Demangles nothing: ASan then prints the name as it is. */
char *
swift_demangle(const char *mangled, size_t mangled_length,
			   char *output, size_t *output_size, uint32_t flags)
{
	return NULL;
}

/* UBSan's options in a server: reports with a stack. */
const char *
__ubsan_default_options(void)
{
	return P2PAY_UBSAN_OPTIONS;
}
