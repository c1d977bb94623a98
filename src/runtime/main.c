/* main.c — ddplab's entry point (placeholder until the CLI lands). */
#include <stdio.h>

#include "build_config.h"

int main(void) {
    printf("ddplab %s\n", DDPLAB_VERSION);
    return 0;
}
