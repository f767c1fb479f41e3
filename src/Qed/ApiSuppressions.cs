using System.Diagnostics.CodeAnalysis;

// RS0026/RS0027 ask for one overload per method once optional parameters appear, so that adding a parameter later
// cannot make calls ambiguous. Here the shape is fixed by the caller's habits: Stream's overrides come with the
// CancellationToken default they are declared with, and BlockDevice offers WriteAsync(data, offset, token) beside the
// flags overload, as RandomAccess and Stream do, rather than make every caller name the token.
[assembly: SuppressMessage("ApiDesign", "RS0026", Scope = "type", Target = "~T:Qed.IO.BlockDevice",
    Justification = "Overloads with and without flags, each ending in an optional CancellationToken, as Stream does.")]
[assembly: SuppressMessage("ApiDesign", "RS0027", Scope = "type", Target = "~T:Qed.IO.BlockDevice",
    Justification = "Overloads with and without flags, each ending in an optional CancellationToken, as Stream does.")]
[assembly: SuppressMessage("ApiDesign", "RS0027", Scope = "type", Target = "~T:Qed.IO.BlockDeviceStream",
    Justification = "Stream's own overrides: their signatures are Stream's.")]
