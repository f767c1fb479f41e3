using System.Net.Sockets;
using Qed.Nbd.Client;
using Qed.Nbd.Protocol;
using Qed.Tests.Infrastructure;
using static Qed.Tests.Nbd.Client.FakeNbdConnection;

namespace Qed.Tests.Nbd.Client;

/// <summary>
/// Our client against servers that break the protocol (a scripted fake): every case fails with an
/// <see cref="NbdException"/> that says what the server did, within seconds, without writing outside the caller's
/// buffer, and the connection refuses later requests at once.
/// </summary>
public sealed class NbdClientHostileServerTests
{
    private static readonly TimeSpan s_timeout = TimeSpan.FromSeconds(10);
    private const byte Guard = 0x5a;
    private const int ReadLength = 4096;

    private sealed record Case(bool DuringHandshake, string Expected, Func<FakeNbdConnection, Task> Script, bool BlockStatus = false);

    private static readonly Dictionary<string, Case> s_cases = new()
    {
        ["chunk outside the range"] = new(false, "lies outside", async c =>
        {
            var r = await c.ReadRequestAsync();
            await c.DataAsync(NbdChunk.FlagDone, r.Cookie, r.Offset + r.Length, 512);
        }),
        ["chunk before the range"] = new(false, "lies outside", async c =>
        {
            var r = await c.ReadRequestAsync();
            await c.HoleAsync(NbdChunk.FlagDone, r.Cookie, r.Offset - 512, 1024);
        }),
        ["hole running past the end of the range"] = new(false, "lies outside", async c =>
        {
            var r = await c.ReadRequestAsync();
            await c.HoleAsync(NbdChunk.FlagDone, r.Cookie, r.Offset + 1024, uint.MaxValue);
        }),
        ["overlapping chunks"] = new(false, "overlaps", async c =>
        {
            var r = await c.ReadRequestAsync();
            await c.DataAsync(0, r.Cookie, r.Offset, 2048);
            await c.HoleAsync(NbdChunk.FlagDone, r.Cookie, r.Offset + 1024, 2048);
        }),
        ["gap in the reply"] = new(false, "covered only 2048", async c =>
        {
            var r = await c.ReadRequestAsync();
            await c.DataAsync(NbdChunk.FlagDone, r.Cookie, r.Offset, 2048);
        }),
        ["data chunk longer than the request"] = new(false, "OFFSET_DATA chunk of 8200 bytes", async c =>
        {
            var r = await c.ReadRequestAsync();
            await c.DataAsync(NbdChunk.FlagDone, r.Cookie, r.Offset, 8192);
        }),
        ["huge chunk length"] = new(false, "exceeds the limit", async c =>
        {
            var r = await c.ReadRequestAsync();
            await c.WriteAsync(Chunk(NbdChunk.FlagDone, NbdChunk.TypeOffsetData, r.Cookie, 0xfffffff0));
            await c.DrainAsync();
        }),
        ["wrong cookie"] = new(false, "not in flight", async c =>
        {
            var r = await c.ReadRequestAsync();
            await c.WriteAsync(Simple(0, r.Cookie + 1000));
            await c.DrainAsync();
        }),
        ["reply magic garbage"] = new(false, "reply magic", async c =>
        {
            await c.ReadRequestAsync();
            await c.WriteAsync(new byte[32]);
            await c.DrainAsync();
        }),
        ["connection closed part-way through data"] = new(false, "part-way", async c =>
        {
            var r = await c.ReadRequestAsync();
            await c.WriteAsync(Chunk(NbdChunk.FlagDone, NbdChunk.TypeOffsetData, r.Cookie, 8 + r.Length), U64(r.Offset), new byte[100]);
        }),
        ["connection closed with the request in flight"] = new(false, "closed the connection", async c => await c.ReadRequestAsync()),
        ["unknown chunk type"] = new(false, "unknown chunk type 77", async c =>
        {
            var r = await c.ReadRequestAsync();
            await c.WriteAsync(Chunk(NbdChunk.FlagDone, 77, r.Cookie, 0));
            await c.DrainAsync();
        }),
        ["NONE chunk with a payload"] = new(false, "NONE chunk of 4 bytes", async c =>
        {
            var r = await c.ReadRequestAsync();
            await c.WriteAsync(Chunk(NbdChunk.FlagDone, NbdChunk.TypeNone, r.Cookie, 4), new byte[4]);
            await c.DrainAsync();
        }),
        ["simple reply after chunks"] = new(false, "after structured chunks", async c =>
        {
            var r = await c.ReadRequestAsync();
            await c.DataAsync(0, r.Cookie, r.Offset, 1024);
            await c.WriteAsync(Simple(0, r.Cookie));
            await c.DrainAsync();
        }),
        ["block status for another context"] = new(false, "context 99", async c =>
        {
            var r = await c.ReadRequestAsync();
            var payload = new byte[12];
            NbdTransmission.WriteBlockStatus(payload, 99, [new NbdExtent(4096, 0)]);
            await c.WriteAsync(Chunk(NbdChunk.FlagDone, NbdChunk.TypeBlockStatus, r.Cookie, 12), payload);
            await c.DrainAsync();
        }, BlockStatus: true),
        ["block status chunk too long"] = new(false, "at most", async c =>
        {
            var r = await c.ReadRequestAsync();
            await c.WriteAsync(Chunk(NbdChunk.FlagDone, NbdChunk.TypeBlockStatus, r.Cookie, 9 * 1024 * 1024));
            await c.DrainAsync();
        }, BlockStatus: true),
        ["block status extent of length 0"] = new(false, "length 0", async c =>
        {
            var r = await c.ReadRequestAsync();
            var payload = new byte[12];
            NbdTransmission.WriteBlockStatus(payload, FakeNbdServer.ContextId, [new NbdExtent(0, 0)]);
            await c.WriteAsync(Chunk(NbdChunk.FlagDone, NbdChunk.TypeBlockStatus, r.Cookie, 12), payload);
            await c.DrainAsync();
        }, BlockStatus: true),
        ["not an NBD server"] = new(true, "not an NBD server", async c =>
        {
            await c.WriteAsync("SSH-2.0-OpenSSH_9.2\r\n\0\0\0\0\0\0\0\0\0\0\0"u8.ToArray());
            await c.DrainAsync();
        }),
        ["option reply length too large"] = new(true, "exceeds the limit", async c =>
        {
            var greeting = new byte[NbdHandshake.GreetingSize];
            NbdHandshake.WriteGreeting(greeting, NbdHandshake.GreetingFlags);
            await c.WriteAsync(greeting);
            await c.ReadAsync(NbdHandshake.ClientFlagsSize);
            var (option, _) = await c.ReadOptionAsync();
            var header = new byte[NbdHandshake.OptionReplyHeaderSize];
            NbdHandshake.WriteOptionReplyHeader(header, option, NbdOptionReply.Ack, 1u << 30);
            await c.WriteAsync(header);
            await c.DrainAsync();
        }),
        ["NBD_INFO_EXPORT of the wrong size"] = new(true, "bad NBD_INFO_EXPORT", async c =>
        {
            var greeting = new byte[NbdHandshake.GreetingSize];
            NbdHandshake.WriteGreeting(greeting, NbdHandshake.GreetingFlags);
            await c.WriteAsync(greeting);
            await c.ReadAsync(NbdHandshake.ClientFlagsSize);
            while (true)
            {
                var (option, _) = await c.ReadOptionAsync();
                if (option == NbdOption.Go)
                {
                    await c.OptionReplyAsync(option, NbdOptionReply.Info, new byte[13]);
                    await c.DrainAsync();
                    return;
                }
                await c.OptionReplyAsync(option, NbdOptionReply.ErrUnsup, []);
            }
        }),
        ["GO without NBD_INFO_EXPORT"] = new(true, "without NBD_INFO_EXPORT", async c =>
        {
            var greeting = new byte[NbdHandshake.GreetingSize];
            NbdHandshake.WriteGreeting(greeting, NbdHandshake.GreetingFlags);
            await c.WriteAsync(greeting);
            await c.ReadAsync(NbdHandshake.ClientFlagsSize);
            while (true)
            {
                var (option, _) = await c.ReadOptionAsync();
                await c.OptionReplyAsync(option, option == NbdOption.Go ? NbdOptionReply.Ack : NbdOptionReply.ErrUnsup, []);
                if (option == NbdOption.Go)
                {
                    await c.DrainAsync();
                    return;
                }
            }
        }),
        ["reply to another option"] = new(true, "reply for option 3", async c =>
        {
            var greeting = new byte[NbdHandshake.GreetingSize];
            NbdHandshake.WriteGreeting(greeting, NbdHandshake.GreetingFlags);
            await c.WriteAsync(greeting);
            await c.ReadAsync(NbdHandshake.ClientFlagsSize);
            await c.ReadOptionAsync();
            await c.OptionReplyAsync(NbdOption.List, NbdOptionReply.Ack, []);
            await c.DrainAsync();
        }),
        ["silence"] = new(true, "no answer within", async c => await c.DrainAsync()),
    };

    public static TheoryData<string> Cases() => [.. s_cases.Keys];

    [Theory]
    [MemberData(nameof(Cases))]
    public async Task A_server_that_breaks_the_protocol_fails_the_connection_clearly(string name)
    {
        var @case = s_cases[name];
        using var dir = new TempDirectory();
        await using var server = FakeNbdServer.Start(dir.Path, async c =>
        {
            if (!@case.DuringHandshake)
            {
                await c.HandshakeAsync();
            }
            await @case.Script(c);
        });
        var options = new NbdClientOptions { ConnectTimeout = TimeSpan.FromSeconds(1), CloseTimeout = TimeSpan.FromSeconds(1) };
        var connecting = NbdClient.ConnectAsync(new UnixDomainSocketEndPoint(server.SocketPath), "", server.SocketPath, options, CancellationToken.None);
        NbdException failure;
        if (@case.DuringHandshake)
        {
            failure = await Assert.ThrowsAsync<NbdException>(() => connecting.WaitAsync(s_timeout));
        }
        else
        {
            await using var client = await connecting.WaitAsync(s_timeout);
            var buffer = new byte[3 * ReadLength];
            buffer.AsSpan().Fill(Guard);
            failure = await Assert.ThrowsAsync<NbdException>(() => @case.BlockStatus
                ? client.GetBlockStatusAsync(ReadLength, ReadLength).AsTask().WaitAsync(s_timeout)
                : client.ReadAsync(buffer.AsMemory(ReadLength, ReadLength), ReadLength).AsTask().WaitAsync(s_timeout));
            // Nothing outside the caller's range was touched, and the connection is now refused at once.
            Assert.All(buffer.AsSpan(0, ReadLength).ToArray(), b => Assert.Equal(Guard, b));
            Assert.All(buffer.AsSpan(2 * ReadLength).ToArray(), b => Assert.Equal(Guard, b));
            await Assert.ThrowsAsync<NbdException>(() => client.ReadAsync(buffer.AsMemory(0, 512), 0).AsTask().WaitAsync(s_timeout));
        }
        TestSeed.Report($"{name}: {failure.Message}");
        Assert.Contains(@case.Expected, failure.Message, StringComparison.Ordinal);
        Assert.DoesNotContain('\n', failure.Message);
        Assert.Null(failure.ErrorName);
    }

    [Fact]
    public async Task An_error_chunk_fails_only_its_request()
    {
        using var dir = new TempDirectory();
        await using var server = FakeNbdServer.Start(dir.Path, async c =>
        {
            await c.HandshakeAsync();
            var first = await c.ReadRequestAsync();
            var payload = new byte[NbdTransmission.ErrorLength("disk on fire")];
            NbdTransmission.WriteError(payload, NbdError.Io, "disk on fire");
            await c.WriteAsync(Chunk(NbdChunk.FlagDone, NbdChunk.TypeError, first.Cookie, (uint)payload.Length), payload);
            var second = await c.ReadRequestAsync();
            await c.HoleAsync(0, second.Cookie, second.Offset, second.Length);
            await c.WriteAsync(Chunk(NbdChunk.FlagDone, NbdChunk.TypeNone, second.Cookie, 0));
            await c.DrainAsync();
        });
        await using var client = await NbdClientTests.Connect(server.SocketPath, "", new NbdClientOptions());
        var buffer = new byte[ReadLength];
        var failure = await Assert.ThrowsAsync<NbdException>(() => client.ReadAsync(buffer, 0).AsTask().WaitAsync(s_timeout));
        Assert.Equal("EIO", failure.ErrorName);
        Assert.Equal(5, failure.Error);
        Assert.EndsWith("Input/output error (EIO): disk on fire", failure.Message, StringComparison.Ordinal);
        buffer.AsSpan().Fill(1);
        await client.ReadAsync(buffer, 8192).AsTask().WaitAsync(s_timeout);
        Assert.All(buffer, b => Assert.Equal(0, b));
    }

    [Fact]
    public async Task Dispose_does_not_hang_on_a_server_that_stopped_reading()
    {
        using var dir = new TempDirectory();
        await using var server = FakeNbdServer.Start(dir.Path, async c =>
        {
            await c.HandshakeAsync(NbdTransmissionFlags.HasFlags);
            await c.IdleAsync();
        });
        var client = await NbdClient.ConnectAsync(new UnixDomainSocketEndPoint(server.SocketPath), "", server.SocketPath,
            new NbdClientOptions { CloseTimeout = TimeSpan.FromMilliseconds(300) }, CancellationToken.None).WaitAsync(s_timeout);
        // Far more than the socket buffers hold: the sender blocks on the full socket.
        var data = new byte[FakeNbdServer.ExportSize];
        var writes = Enumerable.Range(0, 4).Select(_ => client.WriteAsync(data, 0).AsTask()).ToArray();
        await Task.Delay(100);
        Assert.DoesNotContain(writes, w => w.IsCompleted);
        await client.DisposeAsync().AsTask().WaitAsync(s_timeout);
        foreach (var write in writes)
        {
            await Assert.ThrowsAsync<NbdException>(() => write.WaitAsync(s_timeout));
        }
    }

    [Fact]
    public async Task Dispose_fails_a_request_the_server_never_answers()
    {
        using var dir = new TempDirectory();
        await using var server = FakeNbdServer.Start(dir.Path, async c =>
        {
            await c.HandshakeAsync();
            await c.ReadRequestAsync();
            await c.DrainAsync();
        });
        var client = await NbdClient.ConnectAsync(new UnixDomainSocketEndPoint(server.SocketPath), "", server.SocketPath,
            new NbdClientOptions { CloseTimeout = TimeSpan.FromMilliseconds(300) }, CancellationToken.None).WaitAsync(s_timeout);
        var pending = client.ReadAsync(new byte[512], 0).AsTask();
        await Task.Delay(50);
        Assert.False(pending.IsCompleted);
        await client.DisposeAsync().AsTask().WaitAsync(s_timeout);
        var failure = await Assert.ThrowsAsync<NbdException>(() => pending.WaitAsync(s_timeout));
        Assert.Contains("closed", failure.Message, StringComparison.Ordinal);
    }
}
