/*
 * tests/unit/module_of.h - the module of this test program that holds an
 * address, as the agent would record it (path, bias, the PT_LOAD segment,
 * build-id): for tests that symbolize the program's own code.
 */
#ifndef HALLOC_TESTS_MODULE_OF_H
#define HALLOC_TESTS_MODULE_OF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct module {
	char path[4096];
	uint64_t bias, start, size;
	unsigned char build_id[64];
	size_t build_id_len;
	uintptr_t addr;
	bool found;
};

/* Fails the test when no loaded module holds addr. */
struct module module_of(uintptr_t addr);

#endif
