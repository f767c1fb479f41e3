namespace Qed.Formats.Qcow2;

/// <summary>
/// qcow2 (QCOW2.md): read as an image of its own and as a backing file, written as a <c>convert</c> target, checked
/// without repair. The class is split by job: opening and describing here, creating and writing in
/// <c>Qcow2Format.Create.cs</c>, the check in <c>Qcow2Format.Check.cs</c>.
/// </summary>
internal sealed partial class Qcow2Format : ImageFormat
{
    /// <inheritdoc />
    public override string Name => "qcow2";

    /// <inheritdoc />
    // Magic and a version of 2 or more (QCOW2.md §2.4); version 1 is the old qcow format, recognised separately.
    internal override bool Recognizes(ReadOnlySpan<byte> head) => Qcow2Header.IsQcow2(head);
}
