/* wrk has no option for a client certificate. Preloaded into wrk (LD_PRELOAD), this wraps
 * OpenSSL's SSL_CTX_new: every context wrk makes gets the certificate chain and key named by
 * BENCH_CLIENT_CERT and BENCH_CLIENT_KEY (PEM). Nothing else changes: same wrk, same TLS code,
 * the handshake once per keep-alive connection. Built by egress-bench (cc -shared).
 * OpenSSL is reached through dlsym, so no OpenSSL headers or link flags are needed, and
 * programs without OpenSSL (taskset) load it harmlessly. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>

typedef void *(*ctx_new_fn)(const void *method);
typedef int (*use_file_fn)(void *ctx, const char *file);
typedef int (*use_key_fn)(void *ctx, const char *file, int type);

#define PEM 1 /* SSL_FILETYPE_PEM */

void *SSL_CTX_new(const void *method) {
    ctx_new_fn real = (ctx_new_fn)dlsym(RTLD_NEXT, "SSL_CTX_new");
    use_file_fn use_chain = (use_file_fn)dlsym(RTLD_DEFAULT, "SSL_CTX_use_certificate_chain_file");
    use_key_fn use_key = (use_key_fn)dlsym(RTLD_DEFAULT, "SSL_CTX_use_PrivateKey_file");
    if (!real || !use_chain || !use_key) {
        fprintf(stderr, "wrk-client-cert: OpenSSL functions not found\n");
        abort();
    }
    void *ctx = real(method);
    const char *cert = getenv("BENCH_CLIENT_CERT");
    const char *key = getenv("BENCH_CLIENT_KEY");
    if (ctx && cert && key && (use_chain(ctx, cert) != 1 || use_key(ctx, key, PEM) != 1)) {
        fprintf(stderr, "wrk-client-cert: cannot load %s and %s\n", cert, key);
        abort();
    }
    return ctx;
}
