/*
 * leaky.c - the example in the README: a small configuration reader with
 * three leaks for halloc to find.
 *
 *     make && build/bin/halloc-trace build/examples/leaky
 *
 * It parses "key = value" lines into a list of settings, collects the
 * "include" settings into a second list, and builds a one-line summary in
 * a buffer that grows with realloc. Then it cleans up, or thinks it does.
 * The leaks, numbered as the report lists them (largest first):
 *
 *   leak 1: the include list is never freed (2 blocks, 144 bytes)
 *   leak 2: the summary buffer is never freed (1 block, 43 bytes: the last
 *           size it was realloc'ed to)
 *   leak 3: free_settings() frees each value and node, but not the key
 *           that parse_setting() strdup'ed (6 blocks, 38 bytes)
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct setting {
	char *key;
	char *value;
	struct setting *next;
};

struct include {
	char path[64];
	struct include *next;
};

static const char config_text[] = "# demo server\n"
				  "name = demo\n"
				  "port = 8080\n"
				  "include = users.conf\n"
				  "workers = 4\n"
				  "include = routes.conf\n"
				  "log = demo.log\n";

static char *trim(char *s)
{
	while (*s == ' ')
		s++;
	char *end = s + strlen(s);
	while (end > s && end[-1] == ' ')
		*--end = '\0';
	return s;
}

static struct setting *parse_setting(char *line)
{
	char *eq = strchr(line, '=');
	if (line[0] == '#' || !eq)
		return NULL;
	*eq = '\0';
	struct setting *s = malloc(sizeof(*s));
	s->key = strdup(trim(line)); /* leak 3: free_settings forgets it */
	s->value = strdup(trim(eq + 1));
	s->next = NULL;
	return s;
}

static struct include *add_include(struct include *list, const char *path)
{
	struct include *inc = malloc(sizeof(*inc)); /* leak 1: never freed */
	snprintf(inc->path, sizeof(inc->path), "%s", path);
	inc->next = list;
	return inc;
}

static char *append(char *buf, size_t *len, const char *text)
{
	size_t n = strlen(text);
	buf = realloc(buf, *len + n + 1); /* leak 2: never freed */
	memcpy(buf + *len, text, n + 1);
	*len += n;
	return buf;
}

static void free_settings(struct setting *s)
{
	while (s) {
		struct setting *next = s->next;
		free(s->value);
		free(s);
		s = next;
	}
}

int main(void)
{
	/*
	 * stdout's buffer in static storage: otherwise stdio mallocs one that
	 * is still allocated at exit, and the report would show it too.
	 */
	static char outbuf[BUFSIZ];
	setvbuf(stdout, outbuf, _IOFBF, sizeof(outbuf));

	char *text = strdup(config_text);
	struct setting *settings = NULL, **tail = &settings;
	char *save = NULL;
	for (char *line = strtok_r(text, "\n", &save); line;
	     line = strtok_r(NULL, "\n", &save)) {
		struct setting *s = parse_setting(line);
		if (s) {
			*tail = s;
			tail = &s->next;
		}
	}
	free(text);

	struct include *includes = NULL;
	char *summary = NULL;
	size_t len = 0;
	int count = 0;
	for (struct setting *s = settings; s; s = s->next) {
		if (strcmp(s->key, "include") == 0)
			includes = add_include(includes, s->value);
		else {
			if (len)
				summary = append(summary, &len, " ");
			summary = append(summary, &len, s->key);
			summary = append(summary, &len, "=");
			summary = append(summary, &len, s->value);
		}
		count++;
	}

	printf("%d settings: %s\n", count, summary);
	for (struct include *inc = includes; inc; inc = inc->next)
		printf("include %s\n", inc->path);

	free_settings(settings);
	return 0;
}
