#ifndef XMHF_VERSION
#define XMHF_VERSION "0.1"
#endif
