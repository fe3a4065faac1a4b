/* Rebind wildcard listeners to one loopback address (LD_PRELOAD, tests only).
 *
 * Ray's gRPC servers (GCS, raylet, object manager, every worker and driver) listen on the
 * wildcard address `::` for any node address except 127.0.0.1, and Ray has no setting to change
 * that. A test cluster on 127.0.0.2, 127.0.0.3, ... would then be reachable from every interface
 * of the machine. Preloaded into the cluster's processes, this bind() replaces a wildcard
 * address (0.0.0.0 or ::) with POLYHOST_TEST_BIND_IP (IPv4; as ::ffff:a.b.c.d on an IPv6
 * socket) and leaves every other address untouched.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <dlfcn.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

typedef int (*bind_function)(int, const struct sockaddr *, socklen_t);

int bind(int fd, const struct sockaddr *address, socklen_t length) {
    static bind_function real_bind;
    if (real_bind == NULL) real_bind = (bind_function)dlsym(RTLD_NEXT, "bind");
    const char *wanted_text = getenv("POLYHOST_TEST_BIND_IP");
    struct in_addr wanted;
    if (wanted_text == NULL || address == NULL || inet_pton(AF_INET, wanted_text, &wanted) != 1)
        return real_bind(fd, address, length);
    if (address->sa_family == AF_INET && length >= (socklen_t)sizeof(struct sockaddr_in)) {
        struct sockaddr_in v4;
        memcpy(&v4, address, sizeof v4);
        if (v4.sin_addr.s_addr == htonl(INADDR_ANY)) {
            v4.sin_addr = wanted;
            return real_bind(fd, (const struct sockaddr *)&v4, sizeof v4);
        }
    } else if (address->sa_family == AF_INET6 && length >= (socklen_t)sizeof(struct sockaddr_in6)) {
        struct sockaddr_in6 v6;
        memcpy(&v6, address, sizeof v6);
        if (IN6_IS_ADDR_UNSPECIFIED(&v6.sin6_addr)) {
            memset(&v6.sin6_addr, 0, sizeof v6.sin6_addr);
            v6.sin6_addr.s6_addr[10] = 0xff;
            v6.sin6_addr.s6_addr[11] = 0xff;
            memcpy(&v6.sin6_addr.s6_addr[12], &wanted, 4);
            return real_bind(fd, (const struct sockaddr *)&v6, sizeof v6);
        }
    }
    return real_bind(fd, address, length);
}
