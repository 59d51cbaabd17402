"""A stream client that sends fast but reads slowly (or never) cannot make the server render
ahead and pile up responses in memory: a stream renders at most a bounded number of images
ahead of what its client has taken, and every request is still answered once it reads."""

from __future__ import annotations

import time

import grpc

from p2phd.engine.serving.wire import renderer_pb2 as pb
from p2phd.engine.serving.wire import renderer_pb2_grpc
from tests.reliability.corpus import grey

MAX_BATCH = 2
REQUESTS = 40


def test_a_client_that_does_not_read_holds_the_stream_back(start_server, gated):
    s = start_server(gated, max_batch_size=MAX_BATCH, max_queue_delay_us=0)
    label = grey(512, 1024, 2)  # each answer is 1.5 MiB raw: gRPC's buffers hold only a few
    request = pb.RenderRequest(
        label=pb.Map(
            raw=pb.RawArray(shape=[512, 1024], dtype=pb.DTYPE_UINT8, data=label.tobytes())
        ),
        output_format=pb.OUTPUT_FORMAT_RAW,
    )
    options = [("grpc.max_receive_message_length", 64 << 20)]
    with grpc.insecure_channel(s.target, options=options) as channel:
        stub = renderer_pb2_grpc.RendererStub(channel)
        responses = stub.RenderStream(iter([request] * REQUESTS), timeout=120)
        # Not reading: wait until the server stops rendering (or has rendered everything).
        last, still = -1, 0
        while still < 10 and gated.engine.rendered < REQUESTS:
            time.sleep(0.1)
            still = still + 1 if gated.engine.rendered == last else 0
            last = gated.engine.rendered
        ahead = gated.engine.rendered
        answers = list(responses)
    assert ahead <= 4 * MAX_BATCH + 8, ahead  # in flight + what gRPC's windows buffer
    assert len(answers) == REQUESTS and all(list(r.raw.shape) == [512, 1024, 3] for r in answers)
