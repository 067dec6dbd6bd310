/* The kernel's socket tables (/proc/net/{tcp,tcp6,udp,udp6,raw,raw6}),
 * /proc/net/snmp, and the map from socket inode to owning process built
 * from /proc/PID/fd. Shared by the network_activity and listening_ports
 * collectors (each builds its own map: collectors share no state). */
#ifndef AGENT_LIB_PROCNET_H
#define AGENT_LIB_PROCNET_H

#include <stdbool.h>
#include <stddef.h>

#include <cjson/cJSON.h>

struct agent_ctx;

enum procnet_table {
	PROCNET_TCP,
	PROCNET_TCP6,
	PROCNET_UDP,
	PROCNET_UDP6,
	PROCNET_RAW,
	PROCNET_RAW6,
	PROCNET_TABLES
};

/* The TCP states of the "st" column (include/net/tcp_states.h). */
enum { PROCNET_ESTABLISHED = 1, PROCNET_CLOSE = 7, PROCNET_LISTEN = 10 };

struct procnet_socket {
	unsigned char table;          /* enum procnet_table */
	unsigned char state;          /* the "st" column */
	unsigned short lport, rport;  /* for raw sockets lport is the IP protocol */
	unsigned char laddr[16];      /* network byte order; IPv4 in the first 4 bytes */
	unsigned char raddr[16];
	unsigned uid;
	unsigned long inode;          /* 0 for sockets no process holds (TIME_WAIT) */
};

struct procnet_list {
	struct procnet_socket *v;
	size_t len, cap;
};

/* "tcp", "tcp6", "udp", "udp6", "raw", "raw6" */
const char *procnet_protocol(enum procnet_table t);
/* "ESTABLISHED", "LISTEN", ...; "UNKNOWN" for numbers the kernel does not use. */
const char *procnet_state_name(unsigned state);

/* One line of a table (without or with its newline). Returns 0 and fills
 * *out, or -1 for the header and anything that is not a well-formed socket
 * line. */
int procnet_parse_line(const char *line, enum procnet_table t, struct procnet_socket *out);
/* The local (or remote) address as text: "10.0.2.15", "2001:db8::1". */
void procnet_format_address(const struct procnet_socket *s, bool remote, char out[46]);
/* A TCP socket in LISTEN, or a UDP socket bound and not connected. */
bool procnet_is_listening(const struct procnet_socket *s);
/* Adds Protocol, LocalAddress, LocalPort and, with `remote`, RemoteAddress,
 * RemotePort and State to o (docs/events.md: a raw socket's IP protocol
 * goes in RemotePort, its LocalPort is 0). */
void procnet_add_fields(cJSON *o, const struct procnet_socket *s, bool remote);

/* Append the sockets of table t under the root to *list. Returns how many
 * were added, or -1 if the table cannot be read (IPv6 off, not a regular
 * file). At most PROCNET_MAX_SOCKETS are kept in all. */
#define PROCNET_MAX_SOCKETS 65536
int procnet_read(struct agent_ctx *ctx, enum procnet_table t, struct procnet_list *list);
void procnet_list_free(struct procnet_list *list);

/* /proc/net/snmp as the NetworkCounters object of docs/events.md (without
 * SampleTimeMs); NULL if the file cannot be read. */
cJSON *procnet_snmp(struct agent_ctx *ctx);

/* Which process holds each socket inode. */
struct procnet_owner {
	unsigned long inode;
	int pid;
};
struct procnet_exe {
	int pid;
	char *exe;
};
struct procnet_owners {
	struct procnet_owner *v;
	size_t len;
	struct procnet_exe *exes; /* readlink of /proc/PID/exe, cached per pass */
	size_t nexes;
	int proc_fd;              /* /proc under the root, or -1 */
};
/* Look through /proc/PID/fd for the inodes in `wanted` (any order, may
 * repeat; 0 is ignored) and stop once each is found. The lowest pid wins
 * when several processes share a socket. */
void procnet_owners_find(struct agent_ctx *ctx, const struct procnet_list *wanted, struct procnet_owners *out);
/* The owning pid, or 0. */
int procnet_owner(const struct procnet_owners *o, unsigned long inode);
/* The executable of pid (cleaned text; "" if unknown), valid until
 * procnet_owners_free. */
const char *procnet_owner_exe(struct agent_ctx *ctx, struct procnet_owners *o, int pid);
void procnet_owners_free(struct procnet_owners *o);

#endif
