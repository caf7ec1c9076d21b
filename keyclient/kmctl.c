/*
 * kmctl.c - the administrator's tool for kmilter's keys.
 */
#include <stdio.h>
#include <string.h>

/* main - dispatch a kmctl command */
int
main(int argc, char **argv)
{
	if (argc > 1 && strcmp(argv[1], "-V") == 0) {
		printf("kmctl %s\n", KMILTER_VERSION);
		return 0;
	}
	fprintf(stderr, "usage: kmctl [-c config] command [args]\n");
	return 2;
}
