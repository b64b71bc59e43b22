/*
 * tests/bpf/driver.c - drives the eBPF attach (agent/bpf/attach.h) the way
 * halloc-trace will once it has -p and --bpf, so tests/e2e/bpf_run can test
 * it before then:
 *
 *	halloc-bpf-driver [options] -p PID
 *	halloc-bpf-driver [options] --bpf [--] PROG [ARGS...]
 *
 *	-o FILE, -q, -d N      as halloc-trace's
 *	--duration SECONDS     stop recording after this long
 *	--aggregate            totals per stack in the kernel
 *	--stack fp|dwarf       how stacks are captured (default dwarf)
 *	--stack-bytes N        DWARF: stack bytes copied (default 8192)
 *	--ring-mib N           ring buffer size
 *	--probes-only          benchmarking: probes that record nothing
 *
 * Exit status: as halloc-trace's (hb_exit_status / hb_result_exit_status).
 */
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agent/bpf/attach.h"
#include "analyzer/analyzer.h"
#include "halloc/log.h"

static const char usage_text[] =
    "usage: halloc-bpf-driver [options] -p PID\n"
    "       halloc-bpf-driver [options] --bpf [--] PROG [ARGS...]\n";

enum {
	OPT_BPF = 256,
	OPT_DURATION,
	OPT_AGGREGATE,
	OPT_STACK,
	OPT_STACK_BYTES,
	OPT_RING,
	OPT_PROBES_ONLY
};

static const struct option long_options[] = {
    {"pid", required_argument, NULL, 'p'},
    {"bpf", no_argument, NULL, OPT_BPF},
    {"output", required_argument, NULL, 'o'},
    {"quiet", no_argument, NULL, 'q'},
    {"depth", required_argument, NULL, 'd'},
    {"duration", required_argument, NULL, OPT_DURATION},
    {"aggregate", no_argument, NULL, OPT_AGGREGATE},
    {"stack", required_argument, NULL, OPT_STACK},
    {"stack-bytes", required_argument, NULL, OPT_STACK_BYTES},
    {"ring-mib", required_argument, NULL, OPT_RING},
    {"probes-only", no_argument, NULL, OPT_PROBES_ONLY},
    {NULL, 0, NULL, 0},
};

static int usage(const char *what, const char *value)
{
	fprintf(stderr, "halloc-trace: %s '%s'\n%s", what, value, usage_text);
	return 2;
}

static void print_report(const char *path)
{
	struct ha_analyze_options analyze = {.symbolize_from_files = true};
	struct ha_report_options report = {.format = HA_FORMAT_TEXT,
					   .stack_frames = 12};
	struct ha_analysis *analysis = NULL;
	struct ha_diag diag = {{0}};

	if (ha_analyze_file(path, &analyze, &analysis, &diag) != HA_OK &&
	    diag.message[0])
		fprintf(stderr, "halloc-trace: warning: %s\n", diag.message);
	if (analysis) {
		ha_report_write(analysis, &report, stderr, &diag);
		ha_analysis_free(analysis);
	}
	fprintf(stderr, "halloc-trace: log written to %s\n", path);
}

int main(int argc, char **argv)
{
	struct hb_config config = {0};
	struct hb_outcome outcome;
	struct hb_diag diag;
	enum hb_result r;
	bool bpf = false, quiet = false;
	char *end;
	int c;

	opterr = 0;
	while ((c = getopt_long(argc, argv, "+p:o:qd:", long_options, NULL)) !=
	       -1) {
		switch (c) {
		case 'p':
			config.pid = (pid_t)strtol(optarg, &end, 10);
			if (*end || config.pid <= 0)
				return usage("invalid pid", optarg);
			break;
		case OPT_BPF:
			bpf = true;
			break;
		case 'o':
			config.output = optarg;
			break;
		case 'q':
			quiet = true;
			break;
		case 'd':
			config.depth = (unsigned)strtoul(optarg, &end, 10);
			if (*end || !config.depth ||
			    config.depth > HALLOC_DEPTH_MAX)
				return usage("invalid depth", optarg);
			break;
		case OPT_DURATION:
			config.duration = strtod(optarg, &end);
			if (*end || config.duration <= 0)
				return usage("invalid duration", optarg);
			break;
		case OPT_AGGREGATE:
			config.aggregate = true;
			break;
		case OPT_STACK:
			if (!strcmp(optarg, "fp"))
				config.stacks = HB_STACKS_FP;
			else if (!strcmp(optarg, "dwarf"))
				config.stacks = HB_STACKS_DWARF;
			else
				return usage("invalid stack mode", optarg);
			break;
		case OPT_STACK_BYTES:
			config.stack_bytes =
			    (unsigned)strtoul(optarg, &end, 10);
			if (*end)
				return usage("invalid stack size", optarg);
			break;
		case OPT_RING:
			config.ring_mib = (unsigned)strtoul(optarg, &end, 10);
			if (*end)
				return usage("invalid ring size", optarg);
			break;
		case OPT_PROBES_ONLY:
			config.probes_only = true;
			break;
		default:
			return usage("bad option", argv[optind - 1]);
		}
	}
	if (bpf == (config.pid != 0))
		return usage("give -p PID or --bpf PROG",
			     bpf ? "both" : "none");
	if (bpf) {
		if (optind >= argc)
			return usage("no program to run", "");
		config.argv = argv + optind;
	} else if (optind < argc) {
		return usage("unexpected argument", argv[optind]);
	}

	r = hb_record(&config, &outcome, &diag);
	if (r) {
		fprintf(stderr, "halloc-trace: %s\n", diag.message);
		return hb_result_exit_status(r);
	}
	if (diag.message[0])
		fprintf(stderr, "halloc-trace: warning: %s\n", diag.message);
	if (outcome.events_lost)
		fprintf(stderr, "halloc-trace: warning: %llu events lost\n",
			(unsigned long long)outcome.events_lost);
	if (!quiet) {
		signal(SIGPIPE, SIG_IGN);
		print_report(outcome.log_path);
	}
	return hb_exit_status(&config, &outcome);
}
