using System.Buffers.Binary;
using System.Collections.Concurrent;
using Qed.Nbd.Protocol;
using Qed.Nbd.Server;
using Qed.Tests.Infrastructure;

namespace Qed.Tests.Nbd.Negotiation;

/// <summary>
/// Each option's successful and refused answers (NBD.md 1.5-1.7, 2.5, 3.1-3.4): INFO, GO, EXPORT_NAME, LIST, ABORT,
/// STRUCTURED_REPLY, and the session a GO or EXPORT_NAME settles.
/// </summary>
public sealed class NegotiationOptionTests
{
    private const ushort Writable = NbdTransmissionFlags.HasFlags | NbdTransmissionFlags.SendFlush | NbdTransmissionFlags.SendFua
        | NbdTransmissionFlags.SendCache | NbdTransmissionFlags.SendTrim | NbdTransmissionFlags.SendWriteZeroes | NbdTransmissionFlags.SendFastZero;

    private const ushort ReadOnly = NbdTransmissionFlags.HasFlags | NbdTransmissionFlags.SendFlush | NbdTransmissionFlags.SendFua
        | NbdTransmissionFlags.SendCache | NbdTransmissionFlags.ReadOnly;

    [Fact]
    public async Task Info_sends_export_block_size_and_ack_even_when_nothing_is_asked()
    {
        using var dir = new TempDirectory();
        await using var server = NegotiationImages.Serve(dir.Path, new ConcurrentQueue<string>());
        using var client = RawNbdClient.Start(server.Connect());

        client.SendInfo(NbdOption.Info, "");
        var items = InfoItems.Parse(client.ReadReplies(NbdOption.Info));

        Assert.Equal((ulong)NegotiationImages.Size, items.Size);
        // The test server allows 16 connections: multi-conn is advertised; no DF without structured replies.
        Assert.Equal(Writable | NbdTransmissionFlags.CanMultiConn, items.Flags);
        Assert.Null(items.Name);
        Assert.Null(items.Description);
        Assert.Equal(new NbdBlockSize(1, NegotiationImages.ClusterSize, 32 * 1024 * 1024), items.BlockSize);
        Assert.Equal(new ushort[] { NbdInfo.Export, NbdInfo.BlockSize }, items.Order);

        // INFO stays in negotiation.
        client.SendOption(NbdOption.StructuredReply);
        client.ExpectOnly(NbdOption.StructuredReply, NbdOptionReply.Ack);
    }

    [Fact]
    public async Task Info_sends_name_when_asked_and_the_description_when_there_is_one()
    {
        using var dir = new TempDirectory();
        await using var server = NegotiationImages.Serve(
            dir.Path, new ConcurrentQueue<string>(), exportName: "disk", configureExport: e => e with { Description = "a test disk" });
        using var client = RawNbdClient.Start(server.Connect());

        client.SendInfo(NbdOption.Info, "", NbdInfo.Name, NbdInfo.BlockSize, 0x7777);
        var items = InfoItems.Parse(client.ReadReplies(NbdOption.Info));

        Assert.Equal("disk", items.Name); // the canonical name of the default export
        Assert.Equal("a test disk", items.Description);
        Assert.NotNull(items.BlockSize);
    }

    [Fact]
    public async Task Descriptions_longer_than_the_protocol_allows_are_cut_on_a_character_boundary()
    {
        // An operator's -D of 5000 bytes: protocol strings stop at 4096 bytes (NBD.md 1.1), in INFO and in LIST alike.
        string description = new string('d', NbdLimits.MaxStringBytes - 1) + "é" + new string('x', 900);
        string expected = new('d', NbdLimits.MaxStringBytes - 1);
        using var dir = new TempDirectory();
        await using var server = NegotiationImages.Serve(dir.Path, new ConcurrentQueue<string>(), configureExport: e => e with { Description = description });
        using var client = RawNbdClient.Start(server.Connect());

        client.SendInfo(NbdOption.Info, "");
        Assert.Equal(expected, InfoItems.Parse(client.ReadReplies(NbdOption.Info)).Description);
        client.SendOption(NbdOption.List);
        var (header, payload) = client.ReadReplies(NbdOption.List)[0];
        Assert.Equal(NbdOptionReply.Server, header.ReplyType);
        Assert.True(NbdHandshake.TryReadServerReply(payload, out _, out string listed, out string? error), error);
        Assert.Equal(expected, listed);
    }

    [Fact]
    public async Task Flags_follow_read_only_structured_replies_and_the_connection_limit()
    {
        using var dir = new TempDirectory();
        await using (var readOnly = NegotiationImages.Serve(dir.Path, new ConcurrentQueue<string>(), readOnly: true))
        {
            using var client = RawNbdClient.Start(readOnly.Connect());
            client.SendOption(NbdOption.StructuredReply);
            client.ExpectOnly(NbdOption.StructuredReply, NbdOptionReply.Ack);
            client.SendInfo(NbdOption.Info, "");
            Assert.Equal(ReadOnly | NbdTransmissionFlags.SendDf | NbdTransmissionFlags.CanMultiConn, InfoItems.Parse(client.ReadReplies(NbdOption.Info)).Flags);
        }

        await using var single = NegotiationImages.Serve(dir.Path, new ConcurrentQueue<string>(), configureOptions: o => o with { MaxConnections = 1 });
        using var only = RawNbdClient.Start(single.Connect());
        only.SendInfo(NbdOption.Info, "");
        Assert.Equal(Writable, InfoItems.Parse(only.ReadReplies(NbdOption.Info)).Flags);
        only.SendOption(NbdOption.StructuredReply);
        only.ExpectOnly(NbdOption.StructuredReply, NbdOptionReply.Ack);
        only.SendInfo(NbdOption.Info, "");
        Assert.Equal(Writable | NbdTransmissionFlags.SendDf, InfoItems.Parse(only.ReadReplies(NbdOption.Info)).Flags);
    }

    [Fact]
    public async Task Preferred_block_size_is_the_cluster_size()
    {
        using var dir = new TempDirectory();
        string image = NegotiationImages.Create(dir.Path, "small-clusters.qed", clusterSize: 4096);
        await using var server = NbdTestServer.Start(dir.Path, image, configureOptions: o => o with { MaxPayload = 1024 * 1024 });
        using var client = RawNbdClient.Start(server.Connect());

        client.SendInfo(NbdOption.Info, "", NbdInfo.BlockSize);
        Assert.Equal(new NbdBlockSize(1, 4096, 1024 * 1024), InfoItems.Parse(client.ReadReplies(NbdOption.Info)).BlockSize);
    }

    [Fact]
    public async Task Info_and_go_for_an_unknown_export_get_err_unknown_with_a_message()
    {
        using var dir = new TempDirectory();
        await using var server = NegotiationImages.Serve(dir.Path, new ConcurrentQueue<string>(), exportName: "disk");
        using var client = RawNbdClient.Start(server.Connect());

        client.SendInfo(NbdOption.Info, "nope");
        Assert.Equal("export 'nope' not present", client.ExpectOnly(NbdOption.Info, NbdOptionReply.ErrUnknown));
        client.SendInfo(NbdOption.Go, "nope\n" + new string('x', 200));
        string message = client.ExpectOnly(NbdOption.Go, NbdOptionReply.ErrUnknown);
        Assert.StartsWith("export 'nope?xxx", message, StringComparison.Ordinal);
        Assert.True(message.Length < 120, message);

        client.SendInfo(NbdOption.Info, "disk");
        InfoItems.Parse(client.ReadReplies(NbdOption.Info));
    }

    [Fact]
    public async Task Info_with_lengths_that_do_not_add_up_gets_err_invalid()
    {
        using var dir = new TempDirectory();
        await using var server = NegotiationImages.Serve(dir.Path, new ConcurrentQueue<string>());
        using var client = RawNbdClient.Start(server.Connect());
        var cases = new List<byte[]>();

        var nameTooLong = new byte[10]; // name length 1000 in a 10-byte payload
        BinaryPrimitives.WriteUInt32BigEndian(nameTooLong, 1000);
        cases.Add(nameTooLong);
        var hugeName = new byte[6];
        BinaryPrimitives.WriteUInt32BigEndian(hugeName, uint.MaxValue);
        cases.Add(hugeName);
        var countTooHigh = new byte[NbdHandshake.InfoRequestLength("", 1)];
        NbdHandshake.WriteInfoRequest(countTooHigh, "", [NbdInfo.Name]);
        BinaryPrimitives.WriteUInt16BigEndian(countTooHigh.AsSpan(4), 2); // says 2 requests, carries 1
        cases.Add(countTooHigh);
        var extraByte = new byte[NbdHandshake.InfoRequestLength("", 0) + 1];
        NbdHandshake.WriteInfoRequest(extraByte, "", []);
        cases.Add(extraByte);
        cases.Add([0, 0, 0]); // shorter than the fixed part
        cases.Add([]);
        string longName = new('n', NbdLimits.MaxStringBytes + 1);
        var overlong = new byte[NbdHandshake.InfoRequestLength(longName, 0)];
        NbdHandshake.WriteInfoRequest(overlong, longName, []);
        cases.Add(overlong);

        int refused = 0;
        foreach (var payload in cases)
        {
            foreach (uint option in new[] { NbdOption.Info, NbdOption.Go })
            {
                client.SendOption(option, payload);
                client.ExpectOnly(option, NbdOptionReply.ErrInvalid);
                refused++;
            }
        }
        Assert.Equal(cases.Count * 2, refused);

        client.SendInfo(NbdOption.Info, "");
        InfoItems.Parse(client.ReadReplies(NbdOption.Info));
    }

    [Fact]
    public async Task Go_sends_what_info_sent_and_settles_the_session()
    {
        using var dir = new TempDirectory();
        var devices = DirectNegotiation.OpenExports(dir.Path, ["disk"], out var exports, e => e with { Description = "described" });
        await using var negotiation = await DirectNegotiation.StartAsync(dir.Path, devices, exports, new NbdServerOptions { MaxConnections = 4 });
        var client = negotiation.Client;
        client.ReadGreeting();
        client.SendClientFlags(NbdHandshakeFlags.ClientFixedNewstyle | NbdHandshakeFlags.ClientNoZeroes);
        client.SendOption(NbdOption.StructuredReply);
        client.ExpectOnly(NbdOption.StructuredReply, NbdOptionReply.Ack);

        client.SendInfo(NbdOption.Info, "disk", NbdInfo.Name, NbdInfo.BlockSize, NbdInfo.Description);
        var info = InfoItems.Parse(client.ReadReplies(NbdOption.Info));
        client.SendInfo(NbdOption.Go, "disk", NbdInfo.Name, NbdInfo.BlockSize, NbdInfo.Description);
        var go = InfoItems.Parse(client.ReadReplies(NbdOption.Go));

        Assert.Equal(info with { Order = [] }, go with { Order = [] });
        Assert.Equal(info.Order, go.Order);
        var session = await negotiation.SessionAsync();
        Assert.NotNull(session);
        Assert.Same(exports[0], session.Export);
        Assert.Equal(go.Flags, session.TransmissionFlags);
        Assert.True(session.StructuredReplies);
        Assert.Equal(0u, session.BaseAllocationContextId);
        Assert.Equal(0u, session.AllocationDepthContextId);
        Assert.Equal(0, client.Available); // the server is done writing (the session exists): nothing after the ACK, no padding
    }

    [Fact]
    public async Task Export_name_answers_size_and_flags_padded_unless_no_zeroes()
    {
        using var dir = new TempDirectory();
        var devices = DirectNegotiation.OpenExports(dir.Path, ["a", "b"], out var exports);
        try
        {
            foreach (bool noZeroes in new[] { false, true })
            {
                await ExportNameOnce(noZeroes);
            }
        }
        finally
        {
            foreach (var device in devices)
            {
                await device.DisposeAsync();
            }
        }

        async Task ExportNameOnce(bool noZeroes)
        {
            await using var negotiation = await DirectNegotiation.StartAsync(dir.Path, [], exports, new NbdServerOptions { MaxConnections = 1 });
            var client = negotiation.Client;
            client.ReadGreeting();
            client.SendClientFlags(noZeroes ? NbdHandshakeFlags.ClientNoZeroes : 0); // plain newstyle may send EXPORT_NAME
            client.SendOption(NbdOption.ExportName, "b"u8);

            var reply = client.ReadExactly(noZeroes ? NbdHandshake.ExportNameReplySize : NbdHandshake.ExportNameReplyPaddedSize);
            Assert.Equal((ulong)NegotiationImages.Size, BinaryPrimitives.ReadUInt64BigEndian(reply));
            Assert.Equal(Writable, BinaryPrimitives.ReadUInt16BigEndian(reply.AsSpan(8)));
            Assert.All(reply.AsSpan(NbdHandshake.ExportNameReplySize).ToArray(), b => Assert.Equal(0, b));
            var session = await negotiation.SessionAsync();
            Assert.NotNull(session);
            Assert.Same(exports[1], session.Export);
            Assert.False(session.StructuredReplies);
        }
    }

    [Fact]
    public async Task Export_name_for_an_unknown_export_drops()
    {
        using var dir = new TempDirectory();
        var diagnostics = new ConcurrentQueue<string>();
        await using var server = NegotiationImages.Serve(dir.Path, diagnostics, exportName: "disk");
        using var client = RawNbdClient.Start(server.Connect());

        client.SendOption(NbdOption.ExportName, "other"u8);
        client.ExpectClosed();
        await NegotiationFramingTests.AssertReported(diagnostics, "export 'other' not present");
    }

    [Fact]
    public async Task List_sends_every_export_with_its_description_then_ack()
    {
        using var dir = new TempDirectory();
        var devices = DirectNegotiation.OpenExports(dir.Path, ["first", "second"], out var exports);
        exports[1] = exports[1] with { Description = "the second one" };
        await using var negotiation = await DirectNegotiation.StartAsync(dir.Path, devices, exports);
        var client = negotiation.Client;
        client.ReadGreeting();
        client.SendClientFlags(NbdHandshakeFlags.ClientFixedNewstyle);

        client.SendOption(NbdOption.List);
        var replies = client.ReadReplies(NbdOption.List);
        Assert.Equal(3, replies.Count);
        var listed = new List<(string, string)>();
        foreach (var (header, payload) in replies.SkipLast(1))
        {
            Assert.Equal(NbdOptionReply.Server, header.ReplyType);
            Assert.True(NbdHandshake.TryReadServerReply(payload, out string name, out string description, out string? error), error);
            listed.Add((name, description));
        }
        Assert.Equal([("first", ""), ("second", "the second one")], listed);
        Assert.Equal(NbdOptionReply.Ack, replies[^1].Header.ReplyType);

        client.SendOption(NbdOption.List, [0]);
        client.ExpectOnly(NbdOption.List, NbdOptionReply.ErrInvalid);
    }

    [Fact]
    public async Task Abort_is_acknowledged_and_ends_the_handshake()
    {
        using var dir = new TempDirectory();
        var devices = DirectNegotiation.OpenExports(dir.Path, [""], out var exports);
        await using var negotiation = await DirectNegotiation.StartAsync(dir.Path, devices, exports);
        var client = negotiation.Client;
        client.ReadGreeting();
        client.SendClientFlags(NbdHandshakeFlags.ClientFixedNewstyle);

        client.SendOption(NbdOption.Abort, "ignored"u8);
        client.ExpectOnly(NbdOption.Abort, NbdOptionReply.Ack);
        client.ExpectClosed();
        Assert.Null(await negotiation.SessionAsync());
    }

    [Fact]
    public async Task Abort_from_a_client_that_closed_at_once_is_not_an_error()
    {
        using var dir = new TempDirectory();
        var devices = DirectNegotiation.OpenExports(dir.Path, [""], out var exports);
        await using var negotiation = await DirectNegotiation.StartAsync(dir.Path, devices, exports);
        var client = negotiation.Client;
        client.ReadGreeting();
        client.SendClientFlags(NbdHandshakeFlags.ClientFixedNewstyle);
        client.SendOption(NbdOption.Abort);
        client.Dispose();

        Assert.Null(await negotiation.SessionAsync()); // no exception: the ACK had nobody to go to
    }

    [Fact]
    public async Task Structured_reply_is_acknowledged_once()
    {
        using var dir = new TempDirectory();
        await using var server = NegotiationImages.Serve(dir.Path, new ConcurrentQueue<string>());
        using var client = RawNbdClient.Start(server.Connect());

        client.SendOption(NbdOption.StructuredReply, [1, 2, 3]);
        client.ExpectOnly(NbdOption.StructuredReply, NbdOptionReply.ErrInvalid);
        client.SendOption(NbdOption.StructuredReply);
        client.ExpectOnly(NbdOption.StructuredReply, NbdOptionReply.Ack);
        client.SendOption(NbdOption.StructuredReply);
        client.ExpectOnly(NbdOption.StructuredReply, NbdOptionReply.ErrInvalid);
    }

    [Fact]
    public async Task Starttls_without_tls_configured_gets_err_policy()
    {
        using var dir = new TempDirectory();
        await using var server = NegotiationImages.Serve(dir.Path, new ConcurrentQueue<string>());
        using var client = RawNbdClient.Start(server.Connect());

        client.SendOption(NbdOption.StartTls);
        Assert.Equal("TLS not configured", client.ExpectOnly(NbdOption.StartTls, NbdOptionReply.ErrPolicy));
        client.SendInfo(NbdOption.Info, "");
        InfoItems.Parse(client.ReadReplies(NbdOption.Info));
    }
}
