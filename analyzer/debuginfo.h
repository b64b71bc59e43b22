/*
 * analyzer/debuginfo.h - the libdwfl callbacks every reader of a module
 * file on disk uses (symbolize.c, tracer/faults.c): the file reported at
 * its own addresses, its separate debug info found on this machine.
 *
 * libdw's standard search ends, when nothing local matched, by dlopen'ing
 * libdebuginfod (and curl, gnutls, ... with it: ~10 ms) even when no
 * server is configured. Ours does the same local searches and asks
 * libdw's (debuginfod included) only when DEBUGINFOD_URLS names a server.
 */
#ifndef HALLOC_ANALYZER_DEBUGINFO_H
#define HALLOC_ANALYZER_DEBUGINFO_H

#include <elfutils/libdwfl.h>

extern const Dwfl_Callbacks ha_dwfl_offline_callbacks;

#endif /* HALLOC_ANALYZER_DEBUGINFO_H */
