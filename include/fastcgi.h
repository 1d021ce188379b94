/*
 * fastcgi.h: FastCGI wire constants and record layouts (FastCGI specification 1.0).
 *
 * Part of fcgi, a Rust implementation of the libfcgi C ABI. Same names, values and
 * layouts as the classic header; every structure here is made of bytes (alignment 1).
 */
#ifndef _FASTCGI_H
#define _FASTCGI_H

/* The listening socket a web server hands to the application (spec 2.2). */
#define FCGI_LISTENSOCK_FILENO 0

/* Every record starts with this 8-byte header (spec 3.3). */
typedef struct {
    unsigned char version;
    unsigned char type;
    unsigned char requestIdB1;
    unsigned char requestIdB0;
    unsigned char contentLengthB1;
    unsigned char contentLengthB0;
    unsigned char paddingLength;
    unsigned char reserved;
} FCGI_Header;

/* Largest content length of one record. */
#define FCGI_MAX_LENGTH 0xffff

/* Size of FCGI_Header, in bytes. */
#define FCGI_HEADER_LEN 8

/* The only protocol version. */
#define FCGI_VERSION_1 1

/* Record types (FCGI_Header.type). */
#define FCGI_BEGIN_REQUEST 1
#define FCGI_ABORT_REQUEST 2
#define FCGI_END_REQUEST 3
#define FCGI_PARAMS 4
#define FCGI_STDIN 5
#define FCGI_STDOUT 6
#define FCGI_STDERR 7
#define FCGI_DATA 8
#define FCGI_GET_VALUES 9
#define FCGI_GET_VALUES_RESULT 10
#define FCGI_UNKNOWN_TYPE 11
#define FCGI_MAXTYPE (FCGI_UNKNOWN_TYPE)

/* Request id of management records. */
#define FCGI_NULL_REQUEST_ID 0

/* Body of FCGI_BEGIN_REQUEST. */
typedef struct {
    unsigned char roleB1;
    unsigned char roleB0;
    unsigned char flags;
    unsigned char reserved[5];
} FCGI_BeginRequestBody;

typedef struct {
    FCGI_Header header;
    FCGI_BeginRequestBody body;
} FCGI_BeginRequestRecord;

/* FCGI_BeginRequestBody.flags: keep the connection open after this request. */
#define FCGI_KEEP_CONN 1

/* Roles (FCGI_BeginRequestBody.roleB1/roleB0). */
#define FCGI_RESPONDER 1
#define FCGI_AUTHORIZER 2
#define FCGI_FILTER 3

/* Body of FCGI_END_REQUEST. */
typedef struct {
    unsigned char appStatusB3;
    unsigned char appStatusB2;
    unsigned char appStatusB1;
    unsigned char appStatusB0;
    unsigned char protocolStatus;
    unsigned char reserved[3];
} FCGI_EndRequestBody;

typedef struct {
    FCGI_Header header;
    FCGI_EndRequestBody body;
} FCGI_EndRequestRecord;

/* FCGI_EndRequestBody.protocolStatus values. */
#define FCGI_REQUEST_COMPLETE 0
#define FCGI_CANT_MPX_CONN 1
#define FCGI_OVERLOADED 2
#define FCGI_UNKNOWN_ROLE 3

/* Variable names for FCGI_GET_VALUES / FCGI_GET_VALUES_RESULT. */
#define FCGI_MAX_CONNS "FCGI_MAX_CONNS"
#define FCGI_MAX_REQS "FCGI_MAX_REQS"
#define FCGI_MPXS_CONNS "FCGI_MPXS_CONNS"

/* Body of FCGI_UNKNOWN_TYPE. */
typedef struct {
    unsigned char type;
    unsigned char reserved[7];
} FCGI_UnknownTypeBody;

typedef struct {
    FCGI_Header header;
    FCGI_UnknownTypeBody body;
} FCGI_UnknownTypeRecord;

#endif /* _FASTCGI_H */
