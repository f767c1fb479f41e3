namespace Qed.Format;

/// <summary>Incompatible feature bits of the QED header's <c>features</c> field.</summary>
[Flags]
internal enum QedFeatures : ulong
{
    /// <summary>No feature.</summary>
    None = 0,
    /// <summary>The image has a backing file, named by the header's backing fields.</summary>
    BackingFile = 0x01,
    /// <summary>Metadata may be inconsistent; a writer checks the image before use.</summary>
    NeedCheck = 0x02,
    /// <summary>The backing file is raw; its format is not probed.</summary>
    BackingFormatNoProbe = 0x04,
    /// <summary>Every bit this implementation understands.</summary>
    Known = BackingFile | NeedCheck | BackingFormatNoProbe,
}
