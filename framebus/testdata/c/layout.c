/*
 * layout.c - print the layout of framebus.h as the C compiler sees it.
 *
 * Build: gcc -std=c11 -Wall -Werror -I framebus/include -o layout framebus/testdata/c/layout.c
 *
 * Output, one item a line (read by framebus/protocol_doc_test.go):
 *   <struct>.<field> <offset> <size>     struct is header, slot or entry; arrays: whole size
 *   const <NAME> <decimal value>          every FRAMEBUS_* constant, without the prefix
 *   sizeof <struct> <size>
 * Reserved fields are not listed.
 */
#include <stdio.h>

#include "framebus.h"

#define FIELD(tag, type, field)                                                          \
	printf("%s.%s %zu %zu\n", tag, #field, offsetof(type, field), sizeof(((type *)0)->field))

#define CONST(name) printf("const %s %llu\n", #name, (unsigned long long)(FRAMEBUS_##name))

int main(void)
{
	FIELD("header", framebus_header, magic);
	FIELD("header", framebus_header, abi_version);
	FIELD("header", framebus_header, header_size);
	FIELD("header", framebus_header, state);
	FIELD("header", framebus_header, flags);
	FIELD("header", framebus_header, total_size);
	FIELD("header", framebus_header, generation);
	FIELD("header", framebus_header, heartbeat_ns);
	FIELD("header", framebus_header, payload_offset);
	FIELD("header", framebus_header, payload_size);
	FIELD("header", framebus_header, version_mismatch_count);
	FIELD("header", framebus_header, producer_pid);
	FIELD("header", framebus_header, slot_count);
	FIELD("header", framebus_header, slot_stride);
	FIELD("header", framebus_header, slot_capacity);
	FIELD("header", framebus_header, consumer_capacity);
	FIELD("header", framebus_header, heartbeat_interval_ms);
	FIELD("header", framebus_header, width);
	FIELD("header", framebus_header, height);
	FIELD("header", framebus_header, pixel_format);
	FIELD("header", framebus_header, plane_count);
	FIELD("header", framebus_header, plane_stride);
	FIELD("header", framebus_header, plane_offset);
	FIELD("header", framebus_header, fps_num);
	FIELD("header", framebus_header, fps_den);
	FIELD("header", framebus_header, slot_table_offset);
	FIELD("header", framebus_header, consumer_table_offset);
	FIELD("header", framebus_header, slot_desc_size);
	FIELD("header", framebus_header, consumer_entry_size);
	FIELD("header", framebus_header, created_ns);
	FIELD("header", framebus_header, producer_pidns);
	FIELD("header", framebus_header, active);
	FIELD("header", framebus_header, last_seq);
	FIELD("header", framebus_header, frames_published);
	FIELD("header", framebus_header, last_commit_ns);
	FIELD("header", framebus_header, source_drops);
	FIELD("header", framebus_header, consumers_reclaimed);
	FIELD("header", framebus_header, wake_seq);
	FIELD("header", framebus_header, wake_waiters);
	FIELD("header", framebus_header, hold_max_ns);
	FIELD("header", framebus_header, holds_granted);
	FIELD("header", framebus_header, holds_refused);
	FIELD("header", framebus_header, holds_taken_back);
	FIELD("header", framebus_header, holds_ignored);

	FIELD("slot", framebus_slot_desc, lock);
	FIELD("slot", framebus_slot_desc, frame_seq);
	FIELD("slot", framebus_slot_desc, capture_ns);
	FIELD("slot", framebus_slot_desc, commit_ns);
	FIELD("slot", framebus_slot_desc, bytes);
	FIELD("slot", framebus_slot_desc, checksum);
	FIELD("slot", framebus_slot_desc, frame_flags);
	FIELD("slot", framebus_slot_desc, user_meta_len);
	FIELD("slot", framebus_slot_desc, user_meta);

	FIELD("entry", framebus_consumer_entry, state);
	FIELD("entry", framebus_consumer_entry, pid);
	FIELD("entry", framebus_consumer_entry, sem);
	FIELD("entry", framebus_consumer_entry, waiters);
	FIELD("entry", framebus_consumer_entry, token);
	FIELD("entry", framebus_consumer_entry, last_seq);
	FIELD("entry", framebus_consumer_entry, delivered);
	FIELD("entry", framebus_consumer_entry, dropped);
	FIELD("entry", framebus_consumer_entry, heartbeat_ns);
	FIELD("entry", framebus_consumer_entry, torn_retries);
	FIELD("entry", framebus_consumer_entry, pidns);
	FIELD("entry", framebus_consumer_entry, hold_mask);
	FIELD("entry", framebus_consumer_entry, holds_granted);
	FIELD("entry", framebus_consumer_entry, holds_refused);
	FIELD("entry", framebus_consumer_entry, holds_taken_back);

	CONST(MAGIC);
	CONST(ABI_VERSION);
	CONST(HEADER_SIZE);
	CONST(SLOT_DESC_SIZE);
	CONST(CONSUMER_ENTRY_SIZE);
	CONST(PAYLOAD_ALIGN);
	CONST(MAX_SLOTS);
	CONST(MIN_SLOTS);
	CONST(MAX_CONSUMERS);
	CONST(USER_META_MAX);
	CONST(MAX_PLANES);
	CONST(STATE_INITIALIZING);
	CONST(STATE_READY);
	CONST(STATE_BROKEN);
	CONST(STATE_RETIRED);
	CONST(FLAG_CHECKSUM);
	CONST(FLAG_SHARED_WAKE);
	CONST(FRAME_EOS);
	CONST(ENTRY_FREE);
	CONST(ENTRY_CLAIMING);
	CONST(ENTRY_ACTIVE);
	CONST(FOURCC_AB24);
	CONST(FOURCC_RGB3);
	CONST(FOURCC_BGR3);
	CONST(FOURCC_GREY);
	CONST(FOURCC_YUYV);
	CONST(FOURCC_NV12);
	CONST(FOURCC_YU12);
	CONST(FOURCC_MJPG);

	printf("sizeof header %zu\n", sizeof(framebus_header));
	printf("sizeof slot %zu\n", sizeof(framebus_slot_desc));
	printf("sizeof entry %zu\n", sizeof(framebus_consumer_entry));
	return 0;
}
