/*
 * tracer/faults.h - the fault injection a session asks for, as keys of
 * HALLOC_AGENT (agent/faults.c reads them). Internal to tracer/.
 */
#ifndef HALLOC_TRACER_FAULTS_H
#define HALLOC_TRACER_FAULTS_H

#include <stddef.h>

#include "tracer/tracer.h"

/*
 * The keys ",fail_after=N,..." to append to HALLOC_AGENT's value, in a
 * malloc'ed *keys (NULL when no fault is asked for). `program` is the file
 * that will run, `name` what the user called it. A --fail-at line that is
 * not in the program fails with HT_ERR_USAGE.
 */
enum ht_result ht_fault_keys(const struct ht_faults *faults,
			     const char *program, const char *name, char **keys,
			     struct ht_diag *diag);

/*
 * needed.c: the shared libraries `program` links, as paths, the C/C++
 * runtime left out; malloc'ed, *n of them (NULL and 0 on no memory).
 */
char **ht_needed_libraries(const char *program, size_t *n);
void ht_needed_free(char **libs, size_t n);

#endif /* HALLOC_TRACER_FAULTS_H */
