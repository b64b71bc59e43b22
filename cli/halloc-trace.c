/*
 * cli/halloc-trace.c - `halloc-trace [options] [--] PROG [ARGS...]`: run a
 * program with the agent, write its log, print its report to stderr.
 * With -p PID or --bpf the eBPF attach (agent/bpf/attach.h) records the
 * log instead of the agent.
 *
 * Exit status: the program's (its exit code, or 128+N if signal N killed
 * it), 0 after -p; 2 for a usage error; 125 if halloc-trace itself failed
 * (with -p also: no such process, no privileges for eBPF, ...); 126 if the
 * program cannot be executed; 127 if it was not found. The gates
 * (--error-exitcode N, --max-leaked, --max-peak) decide the status only
 * when it would otherwise be 0: a failed gate, or a log the gates cannot
 * be checked on, exits N (1 without --error-exitcode). A program's own
 * failure is never hidden by a gate. A --suppressions file that cannot be
 * read or has a bad line is a usage error (2), found before PROG runs.
 */
#include <getopt.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agent/bpf/attach.h"
#include "analyzer/analyzer.h"
#include "cli/display.h"
#include "halloc/log.h"
#include "tracer/tracer.h"

#define EXIT_USAGE 2

/* Above any recording anyone waits for; keeps seconds * 1e9 in 64 bits. */
#define DURATION_MAX 1e9

/* --sample's largest interval, as logs may say it (analyzer/sample.h). */
#define SAMPLE_MAX (1ull << 30)

static const char usage_text[] =
    "usage: halloc-trace [options] [--] PROG [ARGS...]\n"
    "       halloc-trace -p PID [options]\n"
    "       halloc-trace --bpf [options] [--] PROG [ARGS...]\n"
    "\n"
    "Runs PROG with the halloc agent, records its heap allocations in a log\n"
    "and prints a report of what it leaked to standard error. -p records a\n"
    "running process instead, and --bpf runs PROG without the agent, both\n"
    "with eBPF uprobes.\n"
    "\n"
    "  -o, --output FILE       write the log to FILE\n"
    "                          (default: halloc.PROG.PID.hlog)\n"
    "  -q, --quiet             print no report\n"
    "  -d, --depth N           record up to N stack frames per call\n"
    "                          (1-256, default 64)\n"
    "  -f, --follow-children   also record the processes PROG starts\n"
    "      --sample BYTES      record a sample of the allocations, one per\n"
    "                          BYTES allocated on average (K, M, G: KiB,\n"
    "                          MiB, GiB; e.g. 512K): cheaper; the report's\n"
    "                          numbers are then estimates\n"
    "      --no-symbols        add no symbols to the log: quicker to end;\n"
    "                          reports then read the binaries on disk\n"
    "      --limit SIZE        fail (ENOMEM) every allocation that would\n"
    "                          take the live heap over SIZE bytes (K, M, G:\n"
    "                          KiB, MiB, GiB; e.g. 64M)\n"
    CLI_SUPPRESSIONS_USAGE
    CLI_GATES_USAGE
    "\n"
    "Fault injection (the agent refuses allocations: NULL and ENOMEM):\n"
    "      --fail-after N      the N-th allocation call (from 1) and every\n"
    "                          later one fail\n"
    "      --fail-rate P       each allocation call fails with probability\n"
    "                          P (0 to 1, e.g. 0.01) ...\n"
    "      --seed S            ... drawn from seed S (default 0): the same\n"
    "                          seed fails the same calls\n"
    "      --fail-at FILE:LINE allocations whose site is FILE:LINE fail\n"
    "\n"
    "  -h, --help              print this help and exit\n"
    "      --version           print the version and exit\n"
    "\n"
    "The report on standard error (as halloc-report shows it):\n"
    CLI_DISPLAY_USAGE
    "\n"
    "eBPF (needs root, or CAP_BPF and CAP_PERFMON, and a kernel with BTF):\n"
    "  -p, --pid PID           record the running process PID until Ctrl-C,\n"
    "                          --duration or its end; leaks are the blocks\n"
    "                          allocated while recording and not freed\n"
    "      --bpf               run PROG under eBPF uprobes instead of the\n"
    "                          agent (static programs, programs that clear\n"
    "                          LD_PRELOAD)\n"
    "      --duration SECONDS  stop recording after SECONDS (e.g. 10, 0.5)\n"
    "      --aggregate         keep totals per stack in the kernel: cheaper\n"
    "                          for long recordings; no peak heap, fp stacks\n"
    "      --stack fp|dwarf    capture stacks with frame pointers, or by\n"
    "                          unwinding a copy of the stack (default dwarf)\n"
    "      --stack-bytes N     dwarf: stack bytes copied per call\n"
    "                          (4096-65536, default 8192)\n"
    "\n"
    "Options end at PROG: the options after it are PROG's own.\n";

enum {
	OPT_VERSION = 256,
	OPT_BPF,
	OPT_DURATION,
	OPT_AGGREGATE,
	OPT_STACK,
	OPT_STACK_BYTES,
	OPT_GATE, /* --error-exitcode, --max-leaked, --max-peak */
	OPT_SUPPRESSIONS,
	OPT_SAMPLE,
	OPT_NO_SYMBOLS,
	OPT_LIMIT,
	OPT_FAIL_AFTER,
	OPT_FAIL_RATE,
	OPT_SEED,
	OPT_FAIL_AT,
};

/* "+": stop at the first non-option; ":": report a missing value. */
static const char short_options[] = "+:o:qd:fhp:";
static const struct option long_options[] = {
    {"output", required_argument, NULL, 'o'},
    {"quiet", no_argument, NULL, 'q'},
    {"depth", required_argument, NULL, 'd'},
    {"follow-children", no_argument, NULL, 'f'},
    {"help", no_argument, NULL, 'h'},
    {"version", no_argument, NULL, OPT_VERSION},
    CLI_DISPLAY_LONG_OPTIONS, /* --format, --top, --sort, ... */
    {"pid", required_argument, NULL, 'p'},
    {"bpf", no_argument, NULL, OPT_BPF},
    {"duration", required_argument, NULL, OPT_DURATION},
    {"aggregate", no_argument, NULL, OPT_AGGREGATE},
    {"stack", required_argument, NULL, OPT_STACK},
    {"stack-bytes", required_argument, NULL, OPT_STACK_BYTES},
    {"suppressions", required_argument, NULL, OPT_SUPPRESSIONS},
    {"sample", required_argument, NULL, OPT_SAMPLE},
    {"no-symbols", no_argument, NULL, OPT_NO_SYMBOLS},
    {"limit", required_argument, NULL, OPT_LIMIT},
    {"error-exitcode", required_argument, NULL, OPT_GATE},
    {"max-leaked", required_argument, NULL, OPT_GATE},
    {"max-peak", required_argument, NULL, OPT_GATE},
    {"fail-after", required_argument, NULL, OPT_FAIL_AFTER},
    {"fail-rate", required_argument, NULL, OPT_FAIL_RATE},
    {"seed", required_argument, NULL, OPT_SEED},
    {"fail-at", required_argument, NULL, OPT_FAIL_AT},
    {NULL, 0, NULL, 0},
};

static struct env {
	const char *output;
	struct cli_display display; /* what the report shows */
	bool quiet;
	unsigned depth;
	bool follow_children;
	uint64_t sample; /* --sample; 0: every event */
	bool no_symbols;
	uint64_t limit; /* --limit; 0: none */
	struct cli_gates gates;
	const char *suppressions_path;
	struct ha_suppressions *suppressions; /* loaded before PROG starts */
	/* eBPF: -p or --bpf */
	unsigned pid;
	bool bpf;
	double duration;
	bool aggregate;
	enum hb_stacks stacks;
	unsigned stack_bytes;
	const char *bpf_only; /* the first option that needs -p or --bpf */
	struct ht_faults faults;
	const char *agent_only; /* the first option that needs the agent */
	bool seed_set;
} env = {
    .depth = HALLOC_DEPTH_DEFAULT,
};

/* Remembers the first option given that only -p and --bpf take. */
static void needs_bpf(const char *option)
{
	if (!env.bpf_only)
		env.bpf_only = option;
}

/* Remembers the first option given that only the preload agent takes. */
static void needs_agent(const char *option)
{
	if (!env.agent_only)
		env.agent_only = option;
}

/* A count from 1 up: digits only, at most 10^18. */
static bool parse_count(const char *text, uint64_t *out)
{
	size_t digits = strspn(text, "0123456789");

	if (digits == 0 || text[digits] || digits > 18)
		return false;
	*out = strtoull(text, NULL, 10);
	return *out >= 1;
}

/* A probability as a plain decimal from 0 to 1 ("0.25", "1"), in
 * billionths. */
static bool parse_probability(const char *text, uint64_t *ppb)
{
	size_t digits = strspn(text, "0123456789");
	double p;

	if (text[digits] == '.')
		digits += 1 + strspn(text + digits + 1, "0123456789");
	if (digits == 0 || text[digits] || !strcmp(text, "."))
		return false;
	p = strtod(text, NULL);
	if (!(p >= 0 && p <= 1))
		return false;
	*ppb = (uint64_t)(p * 1e9 + 0.5);
	return true;
}

/* "FILE:LINE", split at the last colon; the line from 1 up. */
static bool parse_file_line(const char *text, struct ht_faults *f)
{
	const char *colon = strrchr(text, ':');
	static char file[PATH_MAX];

	if (!colon || colon == text || (size_t)(colon - text) >= sizeof(file) ||
	    !cli_parse_unsigned(colon + 1, 1, INT_MAX, &f->fail_at_line))
		return false;
	memcpy(file, text, (size_t)(colon - text));
	file[colon - text] = '\0';
	f->fail_at_file = file;
	return true;
}

/* Seconds as a plain decimal, "10" or "0.5": no sign, exponent or blanks. */
static bool parse_seconds(const char *text, double *out)
{
	size_t digits = strspn(text, "0123456789");
	char *end;

	if (text[digits] == '.')
		digits += 1 + strspn(text + digits + 1, "0123456789");
	if (digits == 0 || text[digits] || !strcmp(text, "."))
		return false;
	*out = strtod(text, &end);
	return *end == '\0' && *out > 0 && *out <= DURATION_MAX;
}

/* What the options say together; returns as parse_options(). With -p
 * there is no PROG: the index returned is argc. */
static int check_combination(int argc, char **argv)
{
	if (env.pid && env.bpf)
		return cli_usage_error("-p and --bpf cannot be used together: -p "
				   "records a running process, --bpf runs one");
	if ((env.pid || env.bpf) && env.follow_children)
		return cli_usage_error("option '-f' cannot be used with %s: the "
				   "eBPF attach records one process",
				   env.pid ? "-p" : "--bpf");
	if ((env.pid || env.bpf) && env.agent_only)
		return cli_usage_error("option '%s' cannot be used with %s: "
				       "faults are injected by the agent",
				       env.agent_only, env.pid ? "-p" : "--bpf");
	if (env.seed_set && !env.faults.fail_rate_set)
		return cli_usage_error("option '--seed' needs --fail-rate");
	if (!env.pid && !env.bpf && env.bpf_only)
		return cli_usage_error("option '%s' needs -p or --bpf",
				   env.bpf_only);
	if (env.stack_bytes && (env.stacks == HB_STACKS_FP || env.aggregate))
		return cli_usage_error(
		    "option '--stack-bytes' is for dwarf stacks, "
		    "not with %s",
		    env.aggregate ? "--aggregate" : "--stack fp");
	if ((env.pid || env.bpf) && env.no_symbols)
		return cli_usage_error("option '--no-symbols' cannot be used "
				   "with %s",
				   env.pid ? "-p" : "--bpf");
	if ((env.pid || env.bpf) && env.sample)
		return cli_usage_error("option '--sample' cannot be used with "
				   "%s: the agent samples",
				   env.pid ? "-p" : "--bpf");
	if ((env.pid || env.bpf) && env.limit)
		return cli_usage_error("option '--limit' cannot be used with %s: "
				   "the agent enforces it",
				   env.pid ? "-p" : "--bpf");
	if (env.pid && optind < argc)
		return cli_usage_error("unexpected argument '%s': -p records a "
				   "running process and takes no program",
				   argv[optind]);
	if (!env.pid && optind >= argc)
		return cli_usage_error("no program to trace");
	return env.pid ? argc : optind;
}

/* Returns the index of PROG in argv, 0 to exit successfully, -1 on a
 * usage error. */
static int parse_options(int argc, char **argv)
{
	int c, index, done;

	opterr = 0;
	while ((c = getopt_long(argc, argv, short_options, long_options,
				&index)) != -1) {
		switch (c) {
		case OPT_GATE:
			if (cli_gate_option(long_options[index].name, optarg,
					    &env.gates) < 0)
				return -1;
			break;
		case OPT_SUPPRESSIONS:
			env.suppressions_path = optarg;
			break;
		case OPT_SAMPLE:
			if (!cli_parse_bytes(optarg, &env.sample) ||
			    !env.sample || env.sample > SAMPLE_MAX)
				return cli_usage_error(
				    "invalid sample interval '%s': expected "
				    "bytes from 1 to 1G, such as 4096, 512K "
				    "or 1M",
				    optarg);
			break;
		case OPT_NO_SYMBOLS:
			env.no_symbols = true;
			break;
		case OPT_LIMIT:
			if (!cli_parse_bytes(optarg, &env.limit) || !env.limit ||
			    env.limit > INT64_MAX)
				return cli_usage_error(
				    "invalid limit '%s': expected a size in "
				    "bytes, such as 65536, 512K, 64M or 1G",
				    optarg);
			break;
		case 'o':
			env.output = optarg;
			break;
		case 'q':
			env.quiet = true;
			break;
		case 'd':
			if (!cli_parse_unsigned(optarg, 1, HALLOC_DEPTH_MAX,
						&env.depth))
				return cli_usage_error(
				    "invalid depth '%s': expected "
				    "a number from 1 to 256",
				    optarg);
			break;
		case 'f':
			env.follow_children = true;
			break;
		case 'p':
			if (!cli_parse_unsigned(optarg, 1, INT_MAX, &env.pid))
				return cli_usage_error("invalid pid '%s': expected "
						   "a process ID",
						   optarg);
			break;
		case OPT_BPF:
			env.bpf = true;
			break;
		case OPT_DURATION:
			if (!parse_seconds(optarg, &env.duration))
				return cli_usage_error(
				    "invalid duration '%s': expected a "
				    "number of seconds, such as 10 or 0.5",
				    optarg);
			needs_bpf("--duration");
			break;
		case OPT_AGGREGATE:
			env.aggregate = true;
			needs_bpf("--aggregate");
			break;
		case OPT_STACK:
			if (!strcmp(optarg, "fp"))
				env.stacks = HB_STACKS_FP;
			else if (!strcmp(optarg, "dwarf"))
				env.stacks = HB_STACKS_DWARF;
			else
				return cli_usage_error("invalid stack mode '%s': "
						   "expected fp or dwarf",
						   optarg);
			needs_bpf("--stack");
			break;
		case OPT_STACK_BYTES:
			/* The range is hb_record()'s to check. */
			if (!cli_parse_unsigned(optarg, 1, UINT_MAX,
						&env.stack_bytes))
				return cli_usage_error("invalid stack size '%s': "
						   "expected a number of bytes",
						   optarg);
			needs_bpf("--stack-bytes");
			break;
		case OPT_FAIL_AFTER:
			if (!parse_count(optarg, &env.faults.fail_after))
				return cli_usage_error(
				    "invalid count '%s' for --fail-after: "
				    "expected a number from 1 up",
				    optarg);
			needs_agent("--fail-after");
			break;
		case OPT_FAIL_RATE:
			if (!parse_probability(optarg,
					       &env.faults.fail_rate_ppb))
				return cli_usage_error(
				    "invalid probability '%s' for "
				    "--fail-rate: expected a number from 0 "
				    "to 1, such as 0.01",
				    optarg);
			env.faults.fail_rate_set = true;
			needs_agent("--fail-rate");
			break;
		case OPT_SEED: {
			unsigned seed;

			if (!cli_parse_unsigned(optarg, 0, UINT_MAX, &seed))
				return cli_usage_error(
				    "invalid seed '%s': expected a number "
				    "from 0 to %u",
				    optarg, UINT_MAX);
			env.faults.seed = seed;
			env.seed_set = true;
			needs_agent("--seed");
			break;
		}
		case OPT_FAIL_AT:
			if (!parse_file_line(optarg, &env.faults))
				return cli_usage_error(
				    "invalid --fail-at '%s': expected "
				    "FILE:LINE, such as main.c:42",
				    optarg);
			needs_agent("--fail-at");
			break;
		case 'h':
			fputs(usage_text, stdout);
			return 0;
		case OPT_VERSION:
			puts("halloc-trace (halloc) " HALLOC_VERSION);
			return 0;
		case ':':
			return cli_bad_option(argv, 1);
		default:
			done = cli_display_option(c, optarg, &env.display);
			if (done == 0)
				return cli_bad_option(argv, 0);
			if (done < 0)
				return -1;
			break;
		}
	}
	return check_combination(argc, argv);
}

/*
 * The report of the log just written, to stderr (unless -q), then where
 * the log is. Returns the gates' exit status: 0 when they pass or none is
 * set, else the status to exit with (also when the log cannot be
 * analyzed, so a pipeline does not pass on a run it could not check).
 */
static int report_and_gate(const char *path)
{
	struct ha_analyze_options analyze = {.symbolize_from_files = true};
	struct ha_report_options report =
	    cli_display_report(&env.display, STDERR_FILENO);
	struct ha_analysis *analysis = NULL;
	struct ha_diag diag = {{0}}, write_diag = {{0}};
	enum ha_result result;
	int gate = 0;

	if (env.quiet && !cli_gates_set(&env.gates))
		return 0;
	result = ha_analyze_file(path, &analyze, &analysis, &diag);
	if (analysis && env.suppressions &&
	    ha_analysis_suppress(analysis, env.suppressions) != HA_OK) {
		ha_analysis_free(analysis);
		analysis = NULL;
		snprintf(diag.message, sizeof(diag.message),
			 "out of memory suppressing leaks of '%s'", path);
		result = HA_ERR_NOMEM;
	}
	if (analysis && env.quiet) {
		gate = cli_gates_status("halloc-trace", analysis, &env.gates);
		ha_analysis_free(analysis);
	} else if (analysis) {
		if (env.display.pid_set &&
		    !ha_analysis_has_pid(analysis, env.display.pid))
			fprintf(stderr,
				"halloc-trace: warning: no process '%u' in "
				"'%s'\n",
				env.display.pid, path);
		if (ha_report_write(analysis, &report, stderr, &write_diag) !=
		    HA_OK)
			fprintf(stderr, "halloc-trace: %s\n",
				write_diag.message);
		/* e.g. events lost: the numbers may be short */
		if (result == HA_OK && !ha_analysis_complete(analysis))
			fprintf(stderr, "halloc-trace: warning: %s\n",
				ha_analysis_incomplete_reason(analysis));
		gate = cli_gates_status("halloc-trace", analysis, &env.gates);
		ha_analysis_free(analysis);
	} else if (result != HA_OK && cli_gates_set(&env.gates)) {
		fprintf(stderr, "halloc-trace: gate failed: the log cannot be "
				"analyzed\n");
		gate = env.gates.exit_code ? (int)env.gates.exit_code
					   : CLI_GATE_EXIT_DEFAULT;
	}
	if (result != HA_OK && diag.message[0])
		fprintf(stderr, "halloc-trace: warning: %s\n", diag.message);
	else if (result != HA_OK)
		fprintf(stderr,
			"halloc-trace: warning: cannot report '%s': %s\n", path,
			ha_result_name(result));
	/* JSON on stderr stays one document a tool can parse. */
	if (!env.quiet && env.display.format == HA_FORMAT_TEXT)
		fprintf(stderr, "halloc-trace: log written to %s\n", path);
	return gate;
}

/* PROG with the preload agent (tracer/). */
static int trace_preload(char **prog_argv)
{
	struct ht_session *session;
	struct ht_config config;
	struct ht_diag diag;
	enum ht_result result;
	int status, gate;

	config = (struct ht_config){
	    .argv = prog_argv,
	    .output = env.output,
	    .depth = env.depth,
	    .follow_children = env.follow_children,
	    .sample = env.sample,
	    .no_symbols = env.no_symbols,
	    .limit = env.limit,
	    .faults = env.faults,
	};
	result = ht_start(&config, &session, &diag);
	if (result) {
		fprintf(stderr, "halloc-trace: %s\n", diag.message);
		return ht_result_exit_status(result);
	}

	result = ht_collect(session, &diag);
	if (!result)
		result = ht_finish(session, &diag);
	if (result) {
		fprintf(stderr, "halloc-trace: %s\n", diag.message);
		ht_session_free(session);
		return ht_result_exit_status(result);
	}
	if (diag.message[0])
		fprintf(stderr, "halloc-trace: warning: %s\n", diag.message);

	status = ht_exit_status(session);
	/* The log is complete: a closed stderr must not change the exit
	 * status. */
	signal(SIGPIPE, SIG_IGN);
	gate = report_and_gate(ht_log_path(session));
	ht_session_free(session);
	return status ? status : gate;
}

/* -p PID, or --bpf PROG: the eBPF attach (agent/bpf/). */
static int trace_bpf(char **prog_argv)
{
	struct hb_config config = {
	    .pid = (pid_t)env.pid,
	    .argv = env.bpf ? prog_argv : NULL,
	    .output = env.output,
	    .depth = env.depth,
	    .stacks = env.stacks,
	    .stack_bytes = env.stack_bytes,
	    .aggregate = env.aggregate,
	    .duration = env.duration,
	};
	struct hb_outcome outcome;
	struct hb_diag diag;
	enum hb_result result;
	int status, gate;

	result = hb_record(&config, &outcome, &diag);
	if (result == HB_ERR_USAGE)
		cli_usage_error("%s", diag.message); /* e.g. --stack-bytes 100 */
	else if (result)
		fprintf(stderr, "halloc-trace: %s\n", diag.message);
	if (result)
		return hb_result_exit_status(result);
	if (diag.message[0])
		fprintf(stderr, "halloc-trace: warning: %s\n", diag.message);
	if (outcome.events_lost)
		fprintf(stderr,
			"halloc-trace: warning: %llu events lost (eBPF "
			"buffers full): the numbers may be short\n",
			(unsigned long long)outcome.events_lost);
	signal(SIGPIPE, SIG_IGN); /* as in trace_preload() */
	gate = report_and_gate(outcome.log_path);
	status = hb_exit_status(&config, &outcome);
	return status ? status : gate;
}

int main(int argc, char **argv)
{
	int first, status;

	cli_name = "halloc-trace";
	first = parse_options(argc, argv);

	if (first <= 0)
		return first == 0 ? 0 : EXIT_USAGE;
	/* Before PROG runs: a bad file must not cost a recording. */
	if (env.suppressions_path) {
		struct ha_diag diag = {{0}};

		if (ha_suppressions_load(env.suppressions_path,
					 &env.suppressions, &diag) != HA_OK) {
			fprintf(stderr, "halloc-trace: %s\n", diag.message);
			return EXIT_USAGE;
		}
	}
	if (env.pid || env.bpf)
		status = trace_bpf(argv + first);
	else
		status = trace_preload(argv + first);
	ha_suppressions_free(env.suppressions);
	return status;
}
