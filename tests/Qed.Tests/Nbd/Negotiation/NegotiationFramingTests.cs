using System.Collections.Concurrent;
using System.Diagnostics;
using Qed.Nbd.Protocol;
using Qed.Nbd.Server;
using Qed.Tests.Infrastructure;

namespace Qed.Tests.Nbd.Negotiation;

/// <summary>
/// The frame of the handshake (NBD.md 1.3, 1.4, 1.9, 6.1): greeting, client flags, option headers, payloads consumed
/// whole, the option cap, the deadline and shutdown. Drops are checked on the wire (the server closes) and in the
/// server's diagnostics (why).
/// </summary>
public sealed class NegotiationFramingTests
{
    [Fact]
    public async Task Greeting_offers_fixed_newstyle_and_no_zeroes()
    {
        using var dir = new TempDirectory();
        var diagnostics = new ConcurrentQueue<string>();
        await using var server = NegotiationImages.Serve(dir.Path, diagnostics);
        using var client = new RawNbdClient(server.Connect());

        Assert.Equal(NbdHandshakeFlags.FixedNewstyle | NbdHandshakeFlags.NoZeroes, client.ReadGreeting());
    }

    [Theory]
    [InlineData(1u << 2)]
    [InlineData(1u << 31)]
    [InlineData(NbdHandshakeFlags.ClientFixedNewstyle | (1u << 5))]
    public async Task Unknown_client_flag_drops(uint flags)
    {
        using var dir = new TempDirectory();
        var diagnostics = new ConcurrentQueue<string>();
        await using var server = NegotiationImages.Serve(dir.Path, diagnostics);
        using var client = RawNbdClient.Start(server.Connect(), flags);

        client.ExpectClosed();
        await AssertReported(diagnostics, "not offered");
    }

    [Fact]
    public async Task Client_without_fixed_newstyle_is_dropped_on_any_option_but_export_name()
    {
        using var dir = new TempDirectory();
        var diagnostics = new ConcurrentQueue<string>();
        await using var server = NegotiationImages.Serve(dir.Path, diagnostics);
        using var client = RawNbdClient.Start(server.Connect(), clientFlags: 0);

        client.SendOption(NbdOption.List);
        client.ExpectClosed();
        await AssertReported(diagnostics, "without fixed newstyle");
    }

    [Fact]
    public async Task Wrong_option_magic_drops()
    {
        using var dir = new TempDirectory();
        var diagnostics = new ConcurrentQueue<string>();
        await using var server = NegotiationImages.Serve(dir.Path, diagnostics);
        using var client = RawNbdClient.Start(server.Connect());

        var header = new byte[NbdHandshake.OptionHeaderSize];
        NbdHandshake.WriteOptionHeader(header, NbdOption.List, 0);
        header[0] ^= 0x01;
        client.Send(header);
        client.ExpectClosed();
        await AssertReported(diagnostics, "option magic");
    }

    [Theory]
    [InlineData(0xFFFFFFF0u)]
    [InlineData(NbdLimits.DefaultMaxOptionLength + 1)]
    public async Task Option_length_above_the_cap_drops_without_reading_it(uint length)
    {
        using var dir = new TempDirectory();
        var diagnostics = new ConcurrentQueue<string>();
        await using var server = NegotiationImages.Serve(dir.Path, diagnostics);
        using (var client = RawNbdClient.Start(server.Connect()))
        {
            var header = new byte[NbdHandshake.OptionHeaderSize];
            NbdHandshake.WriteOptionHeader(header, 99, length);
            client.Send(header); // no payload follows: the server must not wait for it
            client.ExpectClosed();
        }
        await AssertReported(diagnostics, $"length {length} exceeds");

        // Nobody else noticed.
        using var next = RawNbdClient.Start(server.Connect());
        next.SendOption(NbdOption.StructuredReply);
        next.ExpectOnly(NbdOption.StructuredReply, NbdOptionReply.Ack);
    }

    [Theory]
    [InlineData(99u, 100)]
    [InlineData(NbdOption.PeekExport, 0)]
    [InlineData(NbdOption.ExtendedHeaders, 0)]
    [InlineData(0xFFFFFFFFu, NbdLimits.DefaultMaxOptionLength)]
    public async Task Unsupported_options_get_err_unsup_and_their_payload_is_consumed(uint option, uint payloadLength)
    {
        using var dir = new TempDirectory();
        var diagnostics = new ConcurrentQueue<string>();
        await using var server = NegotiationImages.Serve(dir.Path, diagnostics);
        using var client = RawNbdClient.Start(server.Connect());

        // The payload looks like option headers: a server that skipped it would parse them.
        var payload = new byte[payloadLength];
        for (int at = 0; at + NbdHandshake.OptionHeaderSize <= payload.Length; at += NbdHandshake.OptionHeaderSize)
        {
            NbdHandshake.WriteOptionHeader(payload.AsSpan(at), NbdOption.Abort, 0);
        }
        client.SendOption(option, payload);
        string message = client.ExpectOnly(option, NbdOptionReply.ErrUnsup);
        Assert.Equal($"Unsupported option {option}", message);

        client.SendOption(NbdOption.StructuredReply);
        client.ExpectOnly(NbdOption.StructuredReply, NbdOptionReply.Ack);
    }

    [Fact]
    public async Task Options_beyond_the_cap_drop()
    {
        const int MaxOptions = 5;
        using var dir = new TempDirectory();
        var diagnostics = new ConcurrentQueue<string>();
        await using var server = NegotiationImages.Serve(dir.Path, diagnostics, configureOptions: o => o with { MaxOptions = MaxOptions });
        using var client = RawNbdClient.Start(server.Connect());

        int answered = 0;
        for (int i = 0; i < MaxOptions; i++)
        {
            client.SendOption(99);
            client.ExpectOnly(99, NbdOptionReply.ErrUnsup);
            answered++;
        }
        Assert.Equal(MaxOptions, answered);
        client.SendOption(99);
        client.ExpectClosed();
        await AssertReported(diagnostics, $"more than {MaxOptions} options");
    }

    [Fact]
    public async Task Handshake_not_finished_in_time_drops()
    {
        var timeout = TimeSpan.FromMilliseconds(300);
        using var dir = new TempDirectory();
        var diagnostics = new ConcurrentQueue<string>();
        await using var server = NegotiationImages.Serve(dir.Path, diagnostics, configureOptions: o => o with { HandshakeTimeout = timeout });
        using var client = RawNbdClient.Start(server.Connect());
        var clock = Stopwatch.StartNew();

        // Options answered in time do not extend the deadline: it is on the whole handshake.
        client.SendOption(NbdOption.StructuredReply);
        client.ExpectOnly(NbdOption.StructuredReply, NbdOptionReply.Ack);
        client.ExpectClosed();
        Assert.InRange(clock.Elapsed, timeout * 0.5, RawNbdClient.Timeout);
        await AssertReported(diagnostics, "handshake not finished");
    }

    [Fact]
    public async Task Client_closing_during_the_handshake_leaves_the_server_serving()
    {
        using var dir = new TempDirectory();
        var diagnostics = new ConcurrentQueue<string>();
        await using var server = NegotiationImages.Serve(dir.Path, diagnostics);
        using (var halfway = RawNbdClient.Start(server.Connect()))
        {
            var header = new byte[NbdHandshake.OptionHeaderSize];
            NbdHandshake.WriteOptionHeader(header, NbdOption.Go, 100);
            halfway.Send(header.AsSpan(0, 10)); // a truncated header
        }
        using (var beforeFlags = new RawNbdClient(server.Connect()))
        {
            beforeFlags.ReadGreeting();
        }

        using var client = RawNbdClient.Start(server.Connect());
        client.SendOption(NbdOption.StructuredReply);
        client.ExpectOnly(NbdOption.StructuredReply, NbdOptionReply.Ack);
    }

    [Fact]
    public async Task Clients_negotiating_at_once_do_not_disturb_each_other()
    {
        const int Clients = 12;
        using var dir = new TempDirectory();
        var diagnostics = new ConcurrentQueue<string>();
        await using var server = NegotiationImages.Serve(dir.Path, diagnostics);

        // All connected and half-way through before any finishes; every other one then misbehaves and is dropped.
        var clients = Enumerable.Range(0, Clients).Select(_ => RawNbdClient.Start(server.Connect())).ToList();
        try
        {
            foreach (var client in clients)
            {
                client.SendOption(NbdOption.StructuredReply);
            }
            var work = clients.Select((client, i) => Task.Run(() =>
            {
                client.ExpectOnly(NbdOption.StructuredReply, NbdOptionReply.Ack);
                if (i % 2 == 1)
                {
                    client.Send(new byte[NbdHandshake.OptionHeaderSize]); // zero magic
                    client.ExpectClosed();
                    return false;
                }
                client.SendInfo(NbdOption.Info, "");
                Assert.Equal((ulong)NegotiationImages.Size, InfoItems.Parse(client.ReadReplies(NbdOption.Info)).Size);
                client.SendOption(NbdOption.Abort);
                client.ExpectOnly(NbdOption.Abort, NbdOptionReply.Ack);
                return true;
            })).ToArray();
            bool[] served = await Task.WhenAll(work).WaitAsync(RawNbdClient.Timeout * 2);
            Assert.Equal(Clients / 2, served.Count(ok => ok));
            Assert.Equal(Clients / 2, served.Count(ok => !ok));
        }
        finally
        {
            clients.ForEach(client => client.Dispose());
        }
    }

    [Fact]
    public async Task Stopping_server_answers_the_next_option_with_err_shutdown_and_drops()
    {
        using var dir = new TempDirectory();
        var devices = DirectNegotiation.OpenExports(dir.Path, [""], out var exports);
        using var stopping = new CancellationTokenSource();
        stopping.Cancel();
        await using var negotiation = await DirectNegotiation.StartAsync(dir.Path, devices, exports, stopping: stopping.Token);
        var client = negotiation.Client;
        client.ReadGreeting();
        client.SendClientFlags(NbdHandshakeFlags.ClientFixedNewstyle);

        client.SendInfo(NbdOption.Go, "");
        Assert.Equal("Server is shutting down", client.ExpectOnly(NbdOption.Go, NbdOptionReply.ErrShutdown));
        client.ExpectClosed();
        Assert.Null(await negotiation.SessionAsync());
    }

    [Fact]
    public async Task Stopping_server_drops_a_client_waiting_in_the_handshake()
    {
        using var dir = new TempDirectory();
        var diagnostics = new ConcurrentQueue<string>();
        var server = NegotiationImages.Serve(dir.Path, diagnostics);
        RawNbdClient client;
        try
        {
            client = RawNbdClient.Start(server.Connect());
            client.SendOption(NbdOption.StructuredReply);
            client.ExpectOnly(NbdOption.StructuredReply, NbdOptionReply.Ack);
        }
        finally
        {
            await server.DisposeAsync(); // returns only once every connection has ended
        }

        using (client)
        {
            client.ExpectClosed();
        }
    }

    internal static async Task AssertReported(ConcurrentQueue<string> diagnostics, string fragment)
    {
        // The connection task reports on its own thread, possibly a moment after the client saw the close.
        var clock = Stopwatch.StartNew();
        while (!diagnostics.Any(line => line.Contains(fragment, StringComparison.Ordinal)))
        {
            Assert.True(clock.Elapsed < RawNbdClient.Timeout, $"no diagnostic containing '{fragment}'; got: {string.Join(" | ", diagnostics)}");
            await Task.Delay(10);
        }
    }
}
