/*
 * peak.c - a heap whose peak is made by one site while another allocates
 * far more in total, and two leaks at two sites.
 *
 * Truth (checked by tests/e2e/run, cases "gates-*" in cases_reports.py):
 *   leak_small: malloc 300 (LEAK:small); leak_big: malloc 5000 (LEAK:big)
 *   build_peak: 10 x malloc 10000, all live at once, then freed (PEAK:)
 *   churn: 1000 x malloc 1000 each freed at once (CHURN:)
 *   allocations 1012, frees 1010, bytes allocated 1,105,300
 *   peak 105,300 bytes in 12 blocks (the two leaks and build_peak's ten)
 *   leaked 5,300 bytes in 2 blocks; exit status 0
 *   Times: 50 ms pass before build_peak and 50 ms after it, so the peak
 *   is reached 50 ms or more after the start and the run lasts 100 ms or
 *   more (the agent's clock is CLOCK_MONOTONIC_COARSE: a few ms steps).
 *   With the argument "fixed" the leaks are freed: frees 1012, leaked 0.
 * Nothing here uses stdio: its buffer would be one more block in use.
 */
#include <stdlib.h>
#include <string.h>
#include <time.h>

static char *kept[2];

static char *leak_small(void)
{
	return malloc(300); /* LEAK:small */
}

static char *leak_big(void)
{
	return malloc(5000); /* LEAK:big */
}

static void build_peak(void)
{
	char *blocks[10];

	for (int i = 0; i < 10; i++) {
		blocks[i] = malloc(10000); /* PEAK: */
		memset(blocks[i], i, 10000);
	}
	for (int i = 0; i < 10; i++)
		free(blocks[i]);
}

static void pause_50ms(void)
{
	struct timespec ts = {0, 50 * 1000 * 1000};

	while (nanosleep(&ts, &ts) != 0)
		;
}

static void churn(void)
{
	for (int i = 0; i < 1000; i++) {
		char *p = malloc(1000); /* CHURN: */
		memset(p, i, 1000);
		free(p);
	}
}

int main(int argc, char **argv)
{
	kept[0] = leak_small();
	kept[1] = leak_big();
	pause_50ms();
	build_peak();
	pause_50ms();
	churn();
	if (argc > 1 && strcmp(argv[1], "fixed") == 0) {
		free(kept[0]);
		free(kept[1]);
	}
	return 0;
}
