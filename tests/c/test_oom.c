#include "crt.h"
int main(void){return 0;}
