#include <stdio.h>

int main(void) {
    printf("installed from a .deb that no layer of this image holds\n");
    return 0;
}
