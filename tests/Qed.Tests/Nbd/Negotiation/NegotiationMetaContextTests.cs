using System.Buffers.Binary;
using Qed.Nbd.Protocol;
using Qed.Nbd.Server;
using Qed.Tests.Infrastructure;

namespace Qed.Tests.Nbd.Negotiation;

/// <summary>
/// LIST_META_CONTEXT and SET_META_CONTEXT (NBD.md 1.5, 4.1, 4.3): what each query selects, the ids, the errors, and
/// what the session keeps (the selection belongs to the export it named).
/// </summary>
public sealed class NegotiationMetaContextTests
{
    private const string Base = "base:allocation";
    private const string Depth = "qemu:allocation-depth";

    public static TheoryData<bool, string[], string[]> ListCases => new()
    {
        { false, [], [Base] },
        { true, [], [Base, Depth] },
        { true, ["base:"], [Base] },
        { true, ["qemu:"], [Depth] },
        { false, ["qemu:"], [] },
        { true, [Depth, Base, Base], [Base, Depth] },
        { true, ["nbdkit:", "qemu:dirty-bitmap:x", "base:other", "x"], [] },
        { false, [Depth], [] },
    };

    [Theory]
    [MemberData(nameof(ListCases))]
    public async Task List_meta_context_answers_the_matching_contexts_with_id_zero(bool allocationDepth, string[] queries, string[] expected)
    {
        using var dir = new TempDirectory();
        await using var negotiation = await StartAsync(dir, ["disk"], allocationDepth);
        var client = negotiation.Client;

        client.SendMetaContext(NbdOption.ListMetaContext, "disk", queries);
        Assert.Equal(expected.Select(name => new NbdMetaContext(0, name)), Contexts(client.ReadReplies(NbdOption.ListMetaContext)));
    }

    [Fact]
    public async Task Set_meta_context_selects_with_fixed_ids_and_the_session_keeps_them()
    {
        using var dir = new TempDirectory();
        await using var negotiation = await StartAsync(dir, ["disk"], allocationDepth: true);
        var client = negotiation.Client;
        client.SendOption(NbdOption.StructuredReply);
        client.ExpectOnly(NbdOption.StructuredReply, NbdOptionReply.Ack);

        // Wildcards select nothing in SET; a later SET replaces the earlier selection.
        client.SendMetaContext(NbdOption.SetMetaContext, "disk", "base:", "qemu:");
        Assert.Empty(Contexts(client.ReadReplies(NbdOption.SetMetaContext)));
        client.SendMetaContext(NbdOption.SetMetaContext, "disk", Depth);
        Assert.Equal([new NbdMetaContext(2, Depth)], Contexts(client.ReadReplies(NbdOption.SetMetaContext)));
        client.SendMetaContext(NbdOption.SetMetaContext, "", Base, "nbdkit:x", Depth);
        Assert.Equal([new NbdMetaContext(1, Base), new NbdMetaContext(2, Depth)], Contexts(client.ReadReplies(NbdOption.SetMetaContext)));

        client.SendInfo(NbdOption.Go, "disk");
        client.ReadReplies(NbdOption.Go);
        var session = await negotiation.SessionAsync();
        Assert.NotNull(session);
        Assert.Equal(1u, session.BaseAllocationContextId);
        Assert.Equal(2u, session.AllocationDepthContextId);
    }

    [Fact]
    public async Task Set_meta_context_with_no_queries_clears_the_selection()
    {
        using var dir = new TempDirectory();
        await using var negotiation = await StartAsync(dir, ["disk"], allocationDepth: false);
        var client = negotiation.Client;
        client.SendOption(NbdOption.StructuredReply);
        client.ExpectOnly(NbdOption.StructuredReply, NbdOptionReply.Ack);
        client.SendMetaContext(NbdOption.SetMetaContext, "disk", Base, Depth);
        Assert.Equal([new NbdMetaContext(1, Base)], Contexts(client.ReadReplies(NbdOption.SetMetaContext)));
        client.SendMetaContext(NbdOption.SetMetaContext, "disk");
        Assert.Empty(Contexts(client.ReadReplies(NbdOption.SetMetaContext)));

        client.SendInfo(NbdOption.Go, "disk");
        client.ReadReplies(NbdOption.Go);
        var session = await negotiation.SessionAsync();
        Assert.NotNull(session);
        Assert.Equal(0u, session.BaseAllocationContextId);
    }

    [Fact]
    public async Task Go_to_another_export_forgets_the_selection()
    {
        using var dir = new TempDirectory();
        await using var negotiation = await StartAsync(dir, ["one", "two"], allocationDepth: true);
        var client = negotiation.Client;
        client.SendOption(NbdOption.StructuredReply);
        client.ExpectOnly(NbdOption.StructuredReply, NbdOptionReply.Ack);
        client.SendMetaContext(NbdOption.SetMetaContext, "one", Base, Depth);
        Assert.Equal(2, Contexts(client.ReadReplies(NbdOption.SetMetaContext)).Count);

        client.SendInfo(NbdOption.Go, "two");
        client.ReadReplies(NbdOption.Go);
        var session = await negotiation.SessionAsync();
        Assert.NotNull(session);
        Assert.Equal("two", session.Export.Name);
        Assert.True(session.StructuredReplies);
        Assert.Equal(0u, session.BaseAllocationContextId);
        Assert.Equal(0u, session.AllocationDepthContextId);
    }

    [Fact]
    public async Task Set_meta_context_before_structured_replies_gets_err_invalid()
    {
        using var dir = new TempDirectory();
        await using var negotiation = await StartAsync(dir, ["disk"], allocationDepth: false);
        var client = negotiation.Client;

        client.SendMetaContext(NbdOption.SetMetaContext, "disk", Base);
        client.ExpectOnly(NbdOption.SetMetaContext, NbdOptionReply.ErrInvalid);
        client.SendInfo(NbdOption.Go, "disk");
        client.ReadReplies(NbdOption.Go);
        var session = await negotiation.SessionAsync();
        Assert.NotNull(session);
        Assert.Equal(0u, session.BaseAllocationContextId);
    }

    [Fact]
    public async Task Meta_context_for_an_unknown_export_gets_err_unknown()
    {
        using var dir = new TempDirectory();
        await using var negotiation = await StartAsync(dir, ["disk"], allocationDepth: false);
        var client = negotiation.Client;
        client.SendOption(NbdOption.StructuredReply);
        client.ExpectOnly(NbdOption.StructuredReply, NbdOptionReply.Ack);

        foreach (uint option in new[] { NbdOption.ListMetaContext, NbdOption.SetMetaContext })
        {
            client.SendMetaContext(option, "nope", Base);
            Assert.Equal("export 'nope' not present", client.ExpectOnly(option, NbdOptionReply.ErrUnknown));
        }
    }

    [Fact]
    public async Task Meta_context_with_too_many_queries_gets_err_too_big()
    {
        using var dir = new TempDirectory();
        await using var negotiation = await StartAsync(dir, ["disk"], allocationDepth: false);
        var client = negotiation.Client;
        client.SendOption(NbdOption.StructuredReply);
        client.ExpectOnly(NbdOption.StructuredReply, NbdOptionReply.Ack);

        var queries = Enumerable.Repeat(Base, NegotiationOptions.MaxMetaContextQueries).ToArray();
        client.SendMetaContext(NbdOption.SetMetaContext, "disk", queries);
        Assert.Single(Contexts(client.ReadReplies(NbdOption.SetMetaContext)));
        client.SendMetaContext(NbdOption.SetMetaContext, "disk", [.. queries, Base]);
        client.ExpectOnly(NbdOption.SetMetaContext, NbdOptionReply.ErrTooBig);
        client.SendMetaContext(NbdOption.ListMetaContext, "disk", [.. queries, Base]);
        client.ExpectOnly(NbdOption.ListMetaContext, NbdOptionReply.ErrTooBig);
    }

    [Fact]
    public async Task Meta_context_with_bad_lengths_gets_err_invalid()
    {
        using var dir = new TempDirectory();
        await using var negotiation = await StartAsync(dir, ["disk"], allocationDepth: false);
        var client = negotiation.Client;
        client.SendOption(NbdOption.StructuredReply);
        client.ExpectOnly(NbdOption.StructuredReply, NbdOptionReply.Ack);

        var good = new byte[NbdHandshake.MetaContextRequestLength("disk", [Base])];
        NbdHandshake.WriteMetaContextRequest(good, "disk", [Base]);
        List<byte[]> cases =
        [
            [],
            [0, 0, 0, 0, 0, 0],
            Patched(good, 0, 5000),              // export name longer than the payload
            Patched(good, 0, uint.MaxValue),
            Patched(good, 8, 0x40000000),        // a query count the payload cannot hold
            Patched(good, 12, 100),              // a query longer than what is left
            Patched(good, 12, uint.MaxValue),
            [.. good, 0],                        // a byte after the last query
            good[..^1],                          // the last query cut short
        ];

        int refused = 0;
        foreach (var payload in cases)
        {
            foreach (uint option in new[] { NbdOption.ListMetaContext, NbdOption.SetMetaContext })
            {
                client.SendOption(option, payload);
                client.ExpectOnly(option, NbdOptionReply.ErrInvalid);
                refused++;
            }
        }
        Assert.Equal(cases.Count * 2, refused);

        client.SendOption(NbdOption.SetMetaContext, good);
        Assert.Equal([new NbdMetaContext(1, Base)], Contexts(client.ReadReplies(NbdOption.SetMetaContext)));
    }

    private static byte[] Patched(byte[] payload, int offset, uint value)
    {
        var copy = (byte[])payload.Clone();
        BinaryPrimitives.WriteUInt32BigEndian(copy.AsSpan(offset), value);
        return copy;
    }

    private static List<NbdMetaContext> Contexts(List<(NbdOptionReplyHeader Header, byte[] Payload)> replies)
    {
        Assert.Equal(NbdOptionReply.Ack, replies[^1].Header.ReplyType);
        var contexts = new List<NbdMetaContext>();
        foreach (var (header, payload) in replies.SkipLast(1))
        {
            Assert.Equal(NbdOptionReply.MetaContext, header.ReplyType);
            Assert.True(NbdHandshake.TryReadMetaContextReply(payload, out var context, out string? error), error);
            contexts.Add(context);
        }
        return contexts;
    }

    private static async Task<DirectNegotiation> StartAsync(TempDirectory dir, string[] names, bool allocationDepth)
    {
        var devices = DirectNegotiation.OpenExports(dir.Path, names, out var exports, e => e with { AllocationDepth = allocationDepth });
        var negotiation = await DirectNegotiation.StartAsync(dir.Path, devices, exports);
        negotiation.Client.ReadGreeting();
        negotiation.Client.SendClientFlags(NbdHandshakeFlags.ClientFixedNewstyle | NbdHandshakeFlags.ClientNoZeroes);
        return negotiation;
    }
}
