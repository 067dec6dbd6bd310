/* The typed samples collectors hand to detectors (agent_observe_sample),
 * field for field the observed entries of docs/events.md. Pointers are
 * valid during the call only. */
#ifndef AGENT_LIB_SAMPLES_H
#define AGENT_LIB_SAMPLES_H

#include <stdbool.h>
#include <stddef.h>

/* kind "ProcessSample" */
struct process_sample {
	long pid, ppid, uid;
	const char *name, *exe, *cmdline;
	bool deleted;
	/* uid, name, executable and command line are those of this pid's
	 * previous sample (same process, no exec): a detector that keeps them
	 * need not compare them again */
	bool unchanged;
	double cpu_ticks, clock_ticks;
	long long sample_ms;
	struct { int fd; unsigned long inode; } std[3]; /* SocketInodes */
	int nstd;
	const char *const *targets;                     /* FdTargets */
	size_t ntargets;
	const unsigned long *inodes;                    /* AllSocketInodes */
	size_t ninodes;
};

/* One socket of a SocketSample. */
struct dsock {
	const char *proto, *laddr, *raddr, *state;
	long lport, rport, pid, uid;
	double inode;
	bool tcp, udp, raw;
	/* a TCP listener or an unconnected bound UDP socket */
	bool listening;
	/* connected to (or connecting to) a peer that is not this host */
	bool remote;
};

/* kind "SocketSample" */
struct socket_sample {
	const struct dsock *v;
	size_t n;
	long long sample_ms;
};

/* The kinds differ in their first letter: a detector's on_sample, called
 * for every process of every poll, tells them apart by it. A new kind
 * takes a first letter of its own. */
#define SAMPLE_IS_PROCESS(kind) ((kind)[0] == 'P')
#define SAMPLE_IS_SOCKETS(kind) ((kind)[0] == 'S')

#endif
